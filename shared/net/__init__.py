"""Network access on behalf of users: `outbound` guards HTTP requests to URLs a user (or a
model) wrote, so workflows cannot reach the platform's own network (SSRF).

Every request to a user-supplied URL goes through `outbound.guarded_request` (or, when another
client makes the request, `outbound.check_url` first): only http/https, and every address the
host resolves to must be public unless the operator allowed its network
(`AGENTFLOW_OUTBOUND_ALLOW_NETWORKS`). Redirects are followed by hand and checked hop by hop.

Known limit: the check resolves the host, then httpx resolves it again to connect. A DNS
server that answers differently the second time (DNS rebinding, very short TTLs) can slip a
private address past the check. Closing that gap needs connecting to the checked address
itself (a custom transport that pins the resolved IP while keeping SNI and the Host header),
or an egress proxy/firewall in front of the workers; the latter is the recommended deployment.
"""
