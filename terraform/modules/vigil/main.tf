# The Vigil release: its secrets (database URL, RS256 signing key, alerting credentials) and the
# chart, configured to read them from those Secrets rather than from values.

locals {
  scheme          = var.tls_secret_name != "" ? "https" : "http"
  api_url         = "${local.scheme}://${var.public_hostname}"
  alerting_secret = "${var.release_name}-alerting"
  # nonsensitive(): only whether a value is set decides the wiring; the values stay in the Secret.
  has_slack = nonsensitive(var.slack_webhook_url != "")
  has_smtp  = nonsensitive(var.smtp_password != "")

  values = {
    image = merge(
      { repository = var.image_repository, tag = var.image_tag, pullPolicy = "IfNotPresent" },
      var.image_digest != "" ? { digest = var.image_digest } : {},
    )
    config = merge({
      environment              = "production"
      kafka_bootstrap          = var.kafka_bootstrap
      kafka_topic_prefix       = var.kafka_topic_prefix
      kafka_partitions         = var.kafka_partitions
      kafka_replication_factor = var.kafka_replication
      mlflow_tracking_uri      = var.mlflow_tracking_uri
      public_url               = local.api_url
    }, var.alerting_settings)
    database = {
      urlSecret = { name = kubernetes_secret.database.metadata[0].name, key = "VIGIL_DATABASE_URL" }
    }
    jwt = {
      privateKeyRef = { name = kubernetes_secret.jwt.metadata[0].name, key = "private.pem" }
      generate      = false
    }
    secretRefs = concat(
      local.has_slack ? [{ setting = "alerting_slack_webhook_url", name = local.alerting_secret, key = "slack-webhook-url" }] : [],
      local.has_smtp ? [{ setting = "alerting_smtp_password", name = local.alerting_secret, key = "smtp-password" }] : [],
    )
    serviceDefaults = {
      keda = { enabled = var.enable_keda, maxReplicas = var.keda_max_replicas }
    }
    api = {
      ingress = {
        enabled   = true
        className = var.ingress_class_name
        hosts     = [{ host = var.public_hostname, paths = ["/"] }]
        tls       = var.tls_secret_name != "" ? [{ secretName = var.tls_secret_name, hosts = [var.public_hostname] }] : []
      }
    }
    monitoring = {
      serviceMonitor   = { enabled = var.enable_monitoring }
      prometheusRule   = { enabled = var.enable_monitoring }
      grafanaDashboard = { enabled = var.enable_monitoring }
    }
  }
}

resource "kubernetes_secret" "database" {
  metadata {
    name      = "${var.release_name}-database"
    namespace = var.namespace
  }
  data = {
    VIGIL_DATABASE_URL = var.database_url
  }
}

# RS256 key for Vigil-issued tokens. It lives in Terraform state: keep the state encrypted.
resource "tls_private_key" "jwt" {
  algorithm = "RSA"
  rsa_bits  = 3072
}

resource "kubernetes_secret" "jwt" {
  metadata {
    name      = "${var.release_name}-jwt"
    namespace = var.namespace
  }
  data = {
    "private.pem" = tls_private_key.jwt.private_key_pem
  }
}

resource "kubernetes_secret" "alerting" {
  count = local.has_slack || local.has_smtp ? 1 : 0

  metadata {
    name      = local.alerting_secret
    namespace = var.namespace
  }
  data = merge(
    local.has_slack ? { "slack-webhook-url" = var.slack_webhook_url } : {},
    local.has_smtp ? { "smtp-password" = var.smtp_password } : {},
  )
}

resource "helm_release" "vigil" {
  name      = var.release_name
  namespace = var.namespace
  chart     = var.chart_path

  values = concat([yamlencode(local.values)], var.extra_values)

  # The migration hook waits for the database; give it and the rollout time, and roll back a failed upgrade.
  timeout         = 900
  atomic          = true
  cleanup_on_fail = true
  wait            = true
  max_history     = 10

  depends_on = [kubernetes_secret.database, kubernetes_secret.jwt, kubernetes_secret.alerting]
}
