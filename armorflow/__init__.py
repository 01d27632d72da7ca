"""armorflow: learn workload behaviour, emit deny-by-default AppArmor and Seccomp profiles."""
__version__ = "0.1.0"
