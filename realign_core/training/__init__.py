"""Shared training machinery: the task protocol, the trainer, and configs."""
