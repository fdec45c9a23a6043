"""The gpu-training Pulumi project: a Spot GPU fleet in a private VPC with its storage and monitoring."""
