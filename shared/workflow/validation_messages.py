"""The validation report's words, in the seed's Chinese and in English.

Keys are message keys: mostly the issue code itself, with variants (`CODE:variant`) where one
code has several explanations.
"""

from __future__ import annotations

from typing import Final

from shared.i18n import Message

MESSAGES: Final[dict[str, Message]] = {
    # -- errors -----------------------------------------------------------------------------
    "TOO_LARGE": Message(
        "工作流过大:{nodes} 个节点、{edges} 条连线(上限 {max_nodes} 个节点、{max_edges} 条连线)",
        "Workflow too large: {nodes} nodes, {edges} edges "
        "(at most {max_nodes} nodes and {max_edges} edges)",
    ),
    "LOOPS_TOO_DEEP": Message(
        "循环嵌套过深:{depth} 层(最多 {limit} 层)",
        "Loops nested too deeply: {depth} levels (at most {limit})",
    ),
    "TOO_MANY_ISSUES:errors": Message(
        "另有 {count} 个错误未列出(只列出前 {shown} 个)",
        "{count} more errors not listed (only the first {shown} are)",
    ),
    "TOO_MANY_ISSUES:warnings": Message(
        "另有 {count} 个警告未列出(只列出前 {shown} 个)",
        "{count} more warnings not listed (only the first {shown} are)",
    ),
    "NO_START_NODE": Message("缺少开始节点(start)", "No start node"),
    "MULTIPLE_START_NODES": Message(
        "只能有一个开始节点:{node} 是多余的(已有 {first})",
        "Only one start node is allowed: {node} is one too many ({first} exists)",
    ),
    "NO_END_NODE": Message("缺少结束节点(end)", "No end node"),
    "DUPLICATE_NODE_ID": Message("节点 ID {node} 重复", "Duplicate node id {node}"),
    "DUPLICATE_EDGE_ID": Message("连线 ID {edge} 重复", "Duplicate edge id {edge}"),
    "UNKNOWN_NODE_TYPE": Message(
        "节点 {node} 的类型 {type} 未知(支持:{types})",
        "Node {node} has unknown type {type} (supported: {types})",
    ),
    "INVALID_NODE_CONFIG": Message(
        "节点 {node} 的配置 {field} 无效:{detail}", "Node {node}, field {field}: {detail}"
    ),
    "INVALID_NODE_CONFIG:whole": Message(
        "节点 {node} 的配置无效:{detail}", "Node {node} has an invalid config: {detail}"
    ),
    "INVALID_EXPRESSION": Message(
        "节点 {node} 的表达式 {field} 无效:{detail}",
        "Node {node} has an invalid expression in {field}: {detail}",
    ),
    "EDGE_SOURCE_MISSING": Message(
        "连线 {edge} 的起点节点 {source} 不存在",
        "Edge {edge} starts at node {source}, which does not exist",
    ),
    "EDGE_TARGET_MISSING": Message(
        "连线 {edge} 的终点节点 {target} 不存在",
        "Edge {edge} ends at node {target}, which does not exist",
    ),
    "SELF_LOOP": Message(
        "连线 {edge} 从节点 {node} 连回它自己(重复执行请使用循环节点)",
        "Edge {edge} connects node {node} to itself (use a loop node to repeat)",
    ),
    "INVALID_HANDLE": Message(
        "连线 {edge} 的出口 {handle} 无效:{type} 节点 {node} 的出口只能是 {allowed}",
        "Edge {edge} leaves through handle {handle}, but a {type} node ({node}) only has {allowed}",
    ),
    "EDGE_INTO_START": Message(
        "连线 {edge} 不能连入开始节点 {node}", "Edge {edge} cannot enter the start node {node}"
    ),
    "EDGE_FROM_END": Message(
        "结束节点 {node} 不能有出线 {edge}", "The end node {node} cannot have outgoing edge {edge}"
    ),
    "CYCLE": Message(
        "存在环路:{path}(要重复执行请使用循环节点)",
        "Cycle: {path} (use a loop node to repeat)",
    ),
    "CYCLE:body": Message(
        "循环 {loop} 的循环体内存在环路:{path}",
        "Cycle inside the body of loop {loop}: {path}",
    ),
    "UNKNOWN_REFERENCE": Message(
        "节点 {node} 的 {field} 引用了 {ref},但不存在名为 {root} 的节点或变量",
        "Node {node}, field {field}: {ref} refers to {root}, which is no node or variable",
    ),
    "REFERENCE_NOT_UPSTREAM": Message(
        "节点 {node} 的 {field} 引用了 {ref},但节点 {target} 不在它的上游",
        "Node {node}, field {field}: {ref} refers to node {target}, which is not upstream of it",
    ),
    "REFERENCE_NOT_UPSTREAM:self": Message(
        "节点 {node} 的 {field} 引用了它自己 {ref}",
        "Node {node}, field {field}: {ref} refers to the node itself",
    ),
    "REFERENCE_NOT_UPSTREAM:body": Message(
        "节点 {node} 的 {field} 引用了 {ref},但 {target} 在循环 {loop} 的循环体内;"
        "循环外请引用循环的结果 {{{loop}}}",
        "Node {node}, field {field}: {ref} refers to {target}, which is inside the body of "
        "loop {loop}; outside it, use the loop's results {{{loop}}}",
    ),
    "INVALID_PARENT:missing": Message(
        "节点 {node} 的 parentId {parent} 不存在",
        "Node {node} has parentId {parent}, which does not exist",
    ),
    "INVALID_PARENT:not_loop": Message(
        "节点 {node} 的 parentId {parent} 不是循环节点(只有循环节点可以包含子节点)",
        "Node {node} has parentId {parent}, which is not a loop node (only loops have bodies)",
    ),
    "INVALID_PARENT:cycle": Message(
        "节点 {node} 的 parentId {parent} 形成了循环嵌套",
        "Node {node} has parentId {parent}, which nests loops inside each other in a circle",
    ),
    "INVALID_PARENT:not_allowed": Message(
        "{type} 节点 {node} 不能放在循环体内(parentId {parent})",
        "A {type} node ({node}) cannot be inside a loop body (parentId {parent})",
    ),
    "CROSS_SCOPE_EDGE": Message(
        "连线 {edge}({source} → {target})跨越了循环体的边界;循环体内的节点只能与同一循环体内的"
        "节点相连,循环从循环节点进入",
        "Edge {edge} ({source} → {target}) crosses a loop body's boundary; body nodes connect "
        "only to nodes of the same body, and the loop node is the way in and out",
    ),
    "MISSING_ERROR_EDGE": Message(
        "节点 {node} 的 on_error 是 error_edge,但没有 sourceHandle 为 error 的出线",
        'Node {node} has on_error "error_edge" but no edge with sourceHandle "error"',
    ),
    # -- warnings ---------------------------------------------------------------------------
    "UNREACHABLE_NODE": Message(
        "节点 {node} 无法从开始节点到达,不会被执行",
        "Node {node} cannot be reached from the start node and will never run",
    ),
    "DEAD_END": Message(
        "节点 {node} 没有出线,执行会在这里停止而不经过结束节点",
        "Node {node} has no outgoing edge: the run stops there without reaching an end node",
    ),
    "UNUSED_INPUT": Message(
        "输入节点 {node} 的字段 {name} 没有被任何地方引用",
        "Field {name} of input node {node} is never referenced",
    ),
    "MISSING_BRANCH": Message(
        "条件节点 {node} 没有 {branch} 分支的出线",
        "Condition node {node} has no edge for its {branch} branch",
    ),
    "ERROR_EDGE_IGNORED": Message(
        "节点 {node} 有 error 出线 {edge},但 on_error 不是 error_edge,这条出线不会被使用",
        'Node {node} has an error edge {edge} but on_error is not "error_edge": '
        "the edge is never taken",
    ),
    "EMPTY_LOOP_BODY": Message(
        "循环节点 {node} 的循环体为空,结果就是原列表",
        "Loop node {node} has an empty body: its results are the items themselves",
    ),
    "AMBIGUOUS_REFERENCE:value": Message(
        "节点 {node} 的 {field} 中的 {ref} 可能有两种含义:上游输出是含有 value 字段的对象时,"
        "它读取这个字段;否则它是上游的整个输出。请写明:字段用 {as_field},整个输出用 {as_whole}",
        "Node {node}, field {field}: {ref} can mean two things: the field value of the upstream "
        "output when that output is an object with that field, otherwise the whole upstream "
        "output. Say which: {as_field} for the field, {as_whole} for the whole output",
    ),
    "AMBIGUOUS_REFERENCE:input": Message(
        "节点 {node} 的 {field} 中的 {ref} 可能有两种含义:上游输出是含有 input 字段的对象时,"
        "它读取这个字段;否则它是整个输入 input_data。请写明:字段用 {as_field},"
        "整个输入用 {as_whole}",
        "Node {node}, field {field}: {ref} can mean two things: the field input of the upstream "
        "output when that output is an object with that field, otherwise the whole input_data. "
        "Say which: {as_field} for the field, {as_whole} for the whole input",
    ),
    "AMBIGUOUS_REFERENCE:shortcut": Message(
        "节点 {node} 的 {field} 中的 {ref} 可能有两种含义:上游输出含有 {name} 字段时读取它,"
        "否则读取输入 input_data 的 {name} 字段。请写明:上游输出的字段用 {as_field},"
        "输入的字段用 {as_input}",
        "Node {node}, field {field}: {ref} can mean two things: the field {name} of the upstream "
        "output when it has one, otherwise the field {name} of input_data. Say which: "
        "{as_field} for the upstream output's field, {as_input} for the input's",
    ),
    "DUPLICATE_EDGE": Message(
        "连线 {edge} 与 {other} 重复(起点、出口和终点都相同)",
        "Edge {edge} duplicates {other} (same source, handle and target)",
    ),
}

# Pydantic's own error types, in both languages; unknown types fall back to pydantic's text.
PYDANTIC_MESSAGES: Final[dict[str, Message]] = {
    "missing": Message("缺少必填字段", "field required"),
    "extra_forbidden": Message("不支持的字段(是否拼写错误?)", "unknown field (a typo?)"),
    "literal_error": Message("取值必须是 {expected} 之一", "must be one of {expected}"),
    "union_tag_invalid": Message(
        "类型 {tag} 无效,可选:{expected_tags}", "type {tag} is invalid; expected {expected_tags}"
    ),
    "union_tag_not_found": Message("缺少字段 {discriminator}", "missing field {discriminator}"),
    "greater_than": Message("必须大于 {gt}", "must be greater than {gt}"),
    "greater_than_equal": Message("必须大于或等于 {ge}", "must be at least {ge}"),
    "less_than": Message("必须小于 {lt}", "must be less than {lt}"),
    "less_than_equal": Message("必须小于或等于 {le}", "must be at most {le}"),
    "string_too_short": Message(
        "至少需要 {min_length} 个字符", "must have at least {min_length} characters"
    ),
    "string_too_long": Message(
        "最多 {max_length} 个字符", "must have at most {max_length} characters"
    ),
    "too_short": Message("至少需要 {min_length} 项", "must have at least {min_length} items"),
    "too_long": Message("最多 {max_length} 项", "must have at most {max_length} items"),
    "string_pattern_mismatch": Message("格式不正确", "has the wrong format"),
    "string_type": Message("必须是字符串", "must be a string"),
    "int_type": Message("必须是整数", "must be an integer"),
    "int_parsing": Message("必须是整数", "must be an integer"),
    "int_from_float": Message("必须是整数", "must be an integer"),
    "float_type": Message("必须是数字", "must be a number"),
    "float_parsing": Message("必须是数字", "must be a number"),
    "bool_type": Message("必须是布尔值", "must be a boolean"),
    "bool_parsing": Message("必须是布尔值", "must be a boolean"),
    "dict_type": Message("必须是对象", "must be an object"),
    "model_type": Message("必须是对象", "must be an object"),
    "model_attributes_type": Message("必须是对象", "must be an object"),
    "list_type": Message("必须是数组", "must be an array"),
}
