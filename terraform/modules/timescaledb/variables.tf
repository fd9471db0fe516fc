variable "namespace" {
  description = "Namespace of the database (must exist)."
  type        = string
}

variable "release_name" {
  description = "Helm release name; also the database Service name."
  type        = string
  default     = "timescaledb"
}

variable "chart_repository" {
  description = "Helm repository serving the timescaledb-single chart."
  type        = string
}

variable "chart_version" {
  description = "timescaledb-single chart version."
  type        = string
}

variable "replicas" {
  description = "Patroni members (1 leader + replicas)."
  type        = number
  default     = 2
}

variable "storage_size" {
  description = "Data volume size per member."
  type        = string
  default     = "100Gi"
}

variable "wal_size" {
  description = "WAL volume size per member."
  type        = string
  default     = "20Gi"
}

variable "storage_class" {
  description = "StorageClass of the volumes (null = cluster default)."
  type        = string
  default     = null
}
