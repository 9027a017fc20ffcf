"""Authentication, authorization, audit and hardening."""
