"""A pure-Python L4/L7 load balancer appliance."""

__version__ = "0.1.0"
