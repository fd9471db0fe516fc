variable "namespace" {
  description = "Namespace of the release (must exist)."
  type        = string
}

variable "release_name" {
  description = "Helm release name."
  type        = string
  default     = "vigil"
}

variable "chart_path" {
  description = "Path (or packaged .tgz) of the Vigil chart."
  type        = string
}

variable "image_repository" {
  description = "Vigil image repository."
  type        = string
}

variable "image_tag" {
  description = "Vigil image tag."
  type        = string
}

variable "image_digest" {
  description = "Optional image digest (sha256:...)."
  type        = string
  default     = ""
}

variable "kafka_bootstrap" {
  description = "Kafka bootstrap servers, host:port[,host:port]."
  type        = string
}

variable "kafka_topic_prefix" {
  description = "Topic name prefix."
  type        = string
  default     = ""
}

variable "kafka_partitions" {
  description = "Partitions for topics the services create themselves."
  type        = number
  default     = 12
}

variable "kafka_replication" {
  description = "Replication factor for topics the services create themselves."
  type        = number
  default     = 3
}

variable "database_url" {
  description = "SQLAlchemy URL of the database; stored in the <release>-database Secret."
  type        = string
  sensitive   = true
}

variable "mlflow_tracking_uri" {
  description = "MLflow tracking server."
  type        = string
}

variable "public_hostname" {
  description = "Ingress host of the API and dashboard."
  type        = string
}

variable "ingress_class_name" {
  description = "IngressClass name."
  type        = string
  default     = "nginx"
}

variable "tls_secret_name" {
  description = "Existing TLS Secret for the Ingress (empty = plain HTTP at the Ingress)."
  type        = string
  default     = ""
}

variable "slack_webhook_url" {
  description = "Slack incoming webhook (empty = not configured)."
  type        = string
  default     = ""
  sensitive   = true
}

variable "smtp_password" {
  description = "SMTP password (empty = not configured)."
  type        = string
  default     = ""
  sensitive   = true
}

variable "alerting_settings" {
  description = "Non-secret alerting variables without the VIGIL_ prefix, e.g. { alerting_smtp_host = \"smtp.example.invalid\" }."
  type        = map(string)
  default     = {}
}

variable "enable_keda" {
  description = "KEDA ScaledObjects on consumer lag for the stream stages."
  type        = bool
  default     = false
}

variable "keda_max_replicas" {
  description = "Maximum replicas per stream stage."
  type        = number
  default     = 12
}

variable "enable_monitoring" {
  description = "ServiceMonitor, PrometheusRule and Grafana dashboard."
  type        = bool
  default     = false
}

variable "extra_values" {
  description = "Extra Helm values documents (YAML), applied last."
  type        = list(string)
  default     = []
}
