"""Network access on behalf of users: `outbound` guards HTTP requests to URLs a user (or a
model) wrote, so workflows cannot reach the platform's own network (SSRF).

Every request to a user-supplied URL goes through `outbound.guarded_request` (or, when another
client makes the request, `outbound.check_url` / `outbound.resolve_checked` first, then connects
to the addresses they return): only http/https, and every address the host resolves to must be
public unless the operator allowed its network (`AGENTFLOW_OUTBOUND_ALLOW_NETWORKS`). Redirects
are followed by hand, checked hop by hop, and carry only CORS-safelisted headers to another
origin.

`pinning` sends a checked request to the checked address itself (Host header and TLS name kept),
so a DNS server answering differently the second time (DNS rebinding) gets no second time.
`bodies` reads response bodies in bounded pieces, decompression included (no gzip bombs).
An egress proxy or firewall in front of the workers remains good defence in depth.
"""
