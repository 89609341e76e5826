"""Service limits (SLA): the policy file and the business calendars it names."""
