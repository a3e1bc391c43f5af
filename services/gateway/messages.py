"""What the gateway says to people."""

from shared.i18n import Message

UPSTREAM_DOWN = Message(
    "{service} 服务暂不可用,请稍后重试", "The {service} service is unavailable; try again shortly"
)
UPSTREAM_SLOW = Message("{service} 服务响应超时", "The {service} service timed out")
BODY_TOO_LARGE = Message(
    "请求体超过 {limit} 字节上限", "The request body exceeds the {limit}-byte limit"
)
EXECUTION_NOT_FOUND = Message("执行记录不存在", "Execution not found")
