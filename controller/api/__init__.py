"""HTTP API v1: one route table, one policy table, one handler module per resource."""
