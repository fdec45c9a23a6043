"""botocore's service models, loaded once per test session (a model such as EC2's takes a second to load, and
every new botocore session loads it again)."""
from functools import lru_cache

import botocore.model
import botocore.session


@lru_cache(maxsize=1)
def _session() -> botocore.session.Session:
    return botocore.session.get_session()


@lru_cache(maxsize=None)
def service_model(service: str) -> botocore.model.ServiceModel:
    return _session().get_service_model(service)
