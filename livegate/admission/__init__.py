"""Fleet-wide admission control: the rule and its leases (:mod:`.control`), the JSON config (:mod:`.config`)
and the Lua scripts that apply the rule atomically in Redis (:mod:`.scripts`). docs/admission.md has the rules."""

from livegate.admission.config import AdmissionConfig, ScopeConfig
from livegate.admission.control import Admission, Lease, admission_from_settings, scope_of

__all__ = ["Admission", "AdmissionConfig", "Lease", "ScopeConfig", "admission_from_settings", "scope_of"]
