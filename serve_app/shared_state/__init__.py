"""What every ingress replica must agree on (breakers, injected faults, flags), kept in one small
Ray actor per application and followed by each replica (serve_app/shared_state/follower.py)."""
