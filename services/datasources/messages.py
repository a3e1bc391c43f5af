"""What the data sources service says to people, in Chinese and English."""

from shared.i18n import Message

DATA_SOURCE_NOT_FOUND = Message("数据源不存在", "Data source not found")
DATA_SOURCE_DELETED = Message("数据源已删除", "Data source deleted")
INVALID_CONFIG = Message("数据源配置无效:{detail}", "Invalid data source configuration: {detail}")
TEST_OK = Message("连接成功", "Connection succeeded")
QUERY_REFUSED = Message("查询被拒绝:{reason}", "Query refused: {reason}")
QUERY_FAILED = Message("查询失败:{reason}", "Query failed: {reason}")
QUERY_TIMEOUT = Message("查询超时:{reason}", "Query timed out: {reason}")
SOURCE_UNREACHABLE = Message(
    "数据源无法连接:{reason}", "The data source cannot be reached: {reason}"
)
SOURCE_AUTH_FAILED = Message(
    "数据源拒绝了所给的凭据,请检查数据源配置中的用户名、密码或令牌:{reason}",
    "The data source refused the credentials; check the user name, password or token in the "
    "data source's config: {reason}",
)
SECRETS_UNREADABLE = Message(
    "数据源的密钥无法解密(加密密钥已更换?)",
    "The data source's secrets cannot be decrypted (was the encryption key changed?)",
)
TESTS_RATE_LIMITED = Message(
    "每分钟最多测试 {limit} 次数据源连接,请 {seconds} 秒后再试",
    "At most {limit} data source tests per minute; try again in {seconds} s",
)
QUERIES_RATE_LIMITED = Message(
    "每分钟最多查询 {limit} 次数据源,请 {seconds} 秒后再试",
    "At most {limit} data source queries per minute; try again in {seconds} s",
)
QUOTA_EXCEEDED = Message(
    "每个用户最多 {limit} 个数据源,请先删除不用的数据源",
    "A user may have at most {limit} data sources; delete one you no longer use first",
)
