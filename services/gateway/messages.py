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
UNSAFE_PATH = Message(
    "请求路径不能包含 . 或 .. 路径段,也不能包含编码的斜杠",
    "The path may not hold . or .. segments or encoded slashes",
)
TOO_MANY_SOCKETS = Message(
    "同时打开的实时连接已达上限 {limit} 个,请先关闭其他连接",
    "You already have {limit} live connections open; close one first",
)
