"""The gateway: kong.yaml, the Kong router and the streaming forwarder."""
