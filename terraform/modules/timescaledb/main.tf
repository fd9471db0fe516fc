# TimescaleDB in the cluster (timescaledb-single: Patroni, streaming replicas), with a `vigil`
# role owning the `vigil` and `mlflow` databases, created by a post-init script.

resource "random_password" "superuser" {
  length  = 32
  special = false
}

resource "random_password" "admin" {
  length  = 32
  special = false
}

resource "random_password" "replication" {
  length  = 32
  special = false
}

# URL-safe on purpose: it is placed in the SQLAlchemy URL as is.
resource "random_password" "vigil" {
  length  = 32
  special = false
}

resource "kubernetes_secret" "credentials" {
  metadata {
    name      = "${var.release_name}-credentials"
    namespace = var.namespace
  }
  data = {
    PATRONI_SUPERUSER_PASSWORD   = random_password.superuser.result
    PATRONI_admin_PASSWORD       = random_password.admin.result
    PATRONI_REPLICATION_PASSWORD = random_password.replication.result
  }
}

resource "kubernetes_secret" "post_init" {
  metadata {
    name      = "${var.release_name}-vigil-init"
    namespace = var.namespace
  }
  data = {
    "create-vigil.sh" = <<-SCRIPT
      #!/bin/bash
      # Runs once after the cluster is initialised: the application role and its databases.
      set -euo pipefail
      psql -v ON_ERROR_STOP=1 --dbname=postgres <<'SQL'
      CREATE ROLE vigil LOGIN PASSWORD '${random_password.vigil.result}';
      CREATE DATABASE vigil OWNER vigil;
      CREATE DATABASE mlflow OWNER vigil;
      SQL
      psql -v ON_ERROR_STOP=1 --dbname=vigil -c 'CREATE EXTENSION IF NOT EXISTS timescaledb;'
    SCRIPT
  }
}

resource "helm_release" "timescaledb" {
  name       = var.release_name
  namespace  = var.namespace
  repository = var.chart_repository
  chart      = "timescaledb-single"
  version    = var.chart_version

  values = [yamlencode({
    replicaCount = var.replicas
    secrets = {
      credentialsSecretName = kubernetes_secret.credentials.metadata[0].name
    }
    postInit = [{ secret = { name = kubernetes_secret.post_init.metadata[0].name } }]
    persistentVolumes = {
      data = { size = var.storage_size, storageClass = var.storage_class }
      wal  = { size = var.wal_size, storageClass = var.storage_class }
    }
    loadBalancer = { enabled = false }
  })]

  timeout = 900
  wait    = true
}
