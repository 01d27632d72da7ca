"""The audit source: AppArmor and Seccomp records from the audit log or kernel netlink."""

from armorflow.agents.audit.follow import Checkpoint, FileFollower, Position
from armorflow.agents.audit.netlink import NetlinkAuditReader
from armorflow.agents.audit.observe import Ignored, Observation, observe, top_profile
from armorflow.agents.audit.parser import AuditParser, ParseStats
from armorflow.agents.audit.records import AuditFormatError, AuditRecord, parse_record
from armorflow.agents.audit.source import DEFAULT_AUDIT_LOG_PATHS, AuditSource, split_paths

__all__ = [
    "DEFAULT_AUDIT_LOG_PATHS", "AuditFormatError", "AuditParser", "AuditRecord", "AuditSource",
    "Checkpoint", "FileFollower", "Ignored", "NetlinkAuditReader", "Observation", "ParseStats",
    "Position", "observe", "parse_record", "split_paths", "top_profile",
]
