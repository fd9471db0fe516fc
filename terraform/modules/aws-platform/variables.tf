variable "name" {
  description = "Name of the EKS and MSK clusters and the prefix of their resources."
  type        = string
}

variable "kubernetes_version" {
  description = "EKS Kubernetes version."
  type        = string
}

variable "vpc_id" {
  description = "Existing VPC."
  type        = string
}

variable "subnet_ids" {
  description = "Private subnets (one per availability zone) for nodes and brokers."
  type        = list(string)
}

variable "public_access_cidrs" {
  description = "CIDRs allowed to the public EKS endpoint; empty = private endpoint only."
  type        = list(string)
  default     = []
}

variable "node_instance_types" {
  description = "Node group instance types."
  type        = list(string)
}

variable "node_count" {
  description = "Desired, minimum and maximum nodes."
  type        = object({ desired = number, min = number, max = number })
}

variable "kafka_version" {
  description = "MSK Kafka version."
  type        = string
}

variable "broker_instance_type" {
  description = "MSK broker instance type."
  type        = string
}

variable "broker_count" {
  description = "MSK brokers (a multiple of the subnet count)."
  type        = number
}

variable "broker_volume_size_gb" {
  description = "EBS volume per broker, GB."
  type        = number
}

variable "default_replication" {
  description = "default.replication.factor of the brokers."
  type        = number
  default     = 3
}

variable "default_partitions" {
  description = "num.partitions of the brokers."
  type        = number
  default     = 12
}

variable "log_retention_days" {
  description = "CloudWatch log retention, days."
  type        = number
  default     = 365
}
