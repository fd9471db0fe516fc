# Vigil's stream topics, created through the brokers' admin API (the Mongey/kafka provider).

resource "kafka_topic" "this" {
  for_each = var.topics

  name               = "${var.prefix}${each.key}"
  partitions         = each.value.partitions
  replication_factor = var.replication_factor
  config = merge(
    # With acks=all (the producers' default) a write survives one broker loss only with min ISR 2.
    var.replication_factor >= 3 ? { "min.insync.replicas" = "2" } : {},
    each.value.config,
  )
}
