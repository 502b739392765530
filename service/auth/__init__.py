"""Access control: API keys with scopes, read from a keys file that holds only their hashes.

Knows no transport. `KeyStore` answers "which key is this, and may it do that?"; the
HTTP middleware (`service/api/access.py`) and the gRPC interceptor
(`service/grpc/access.py`) ask it and translate its errors to 401/403 and
UNAUTHENTICATED/PERMISSION_DENIED. Off unless `TABSERVE_AUTH_KEYS_FILE` is set.
"""
