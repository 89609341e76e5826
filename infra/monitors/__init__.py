"""What decides on its own, on an injected clock: the SLA monitor and the
dangerous-customer monitor (timers raising alerts once), and the policy
runner that turns events into commands (the callback after a resolution)."""
