"""API keys, roles and rate limits (PRODUCT.md §6); the audit log lives in the store."""

from modelhost.security.keys import ApiKeys, CreatedKey, Principal, hash_secret
from modelhost.security.ratelimit import RateLimiter
from modelhost.security.roles import GRANTS, PRIVILEGED, Permission, Role, allows, parse_role

__all__ = ["GRANTS", "PRIVILEGED", "ApiKeys", "CreatedKey", "Permission", "Principal",
           "RateLimiter", "Role", "allows", "hash_secret", "parse_role"]
