"""What the workflows service says to people, in Chinese and English."""

from shared.i18n import Message

WORKFLOW_NOT_FOUND = Message("工作流不存在", "Workflow not found")
WORKFLOW_DELETED = Message("工作流已删除", "Workflow deleted")
VERSION_NOT_FOUND = Message("工作流版本 {version} 不存在", "Workflow version {version} not found")
TEMPLATE_NOT_FOUND = Message("模板不存在", "Template not found")
TOO_MANY_WORKFLOWS = Message(
    "工作流数量已达上限 {limit} 个,请先删除不用的工作流",
    "You already own {limit} workflows, the most allowed; delete some first",
)
VERSION_CONFLICT = Message(
    "工作流已被修改(当前版本 {current}),请刷新后重试",
    "The workflow was changed meanwhile (now version {current}); reload and retry",
)
STATUS_NOT_ALLOWED = Message(
    "不能手动把状态设为 {status}", "The status cannot be set to {status} by hand"
)
CANNOT_PUBLISH_INVALID = Message(
    "工作流校验未通过,不能发布:{summary}",
    "The workflow is not valid and cannot be published: {summary}",
)
IMPORT_MALFORMED = Message("导入内容格式不正确:{reason}", "The import is malformed: {reason}")
IMPORT_FUTURE_FORMAT = Message(
    "导入格式版本 {version} 高于本平台支持的 {supported}",
    "Import format version {version} is newer than the supported {supported}",
)
