variable "topics" {
  description = "Topics by name (as in core/topics.py): partitions and topic config."
  type = map(object({
    partitions = number
    config     = map(string)
  }))
}

variable "prefix" {
  description = "Prefix added to every topic name."
  type        = string
  default     = ""
}

variable "replication_factor" {
  description = "Replication factor of every topic."
  type        = number
  default     = 3
}
