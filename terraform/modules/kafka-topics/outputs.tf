output "names" {
  description = "Full topic names."
  value       = [for topic in kafka_topic.this : topic.name]
}
