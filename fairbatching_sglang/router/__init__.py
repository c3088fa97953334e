"""FairBatching's cluster router: route each request to the patched SGLang replica with the
largest prefill admission budget (`GET /v1/loads` field `fairbatching_prefill_admission_tokens`)
and queue it at the router when no replica has room. See README.md for why this is a small
adapter and not an `smg` policy.
"""

from fairbatching_sglang.router.config import RouterConfig
from fairbatching_sglang.router.state import AdmissionState, WorkerView

__all__ = ["AdmissionState", "RouterConfig", "WorkerView"]
