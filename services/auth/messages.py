"""What the auth service says to people, in Chinese and English."""

from shared.i18n import Message

USERNAME_TAKEN = Message("用户名已被注册", "That username is already taken")
EMAIL_TAKEN = Message("邮箱已被注册", "That email address is already registered")
BAD_CREDENTIALS = Message("用户名或密码错误", "Incorrect username or password")
LOGIN_THROTTLED = Message(
    "登录失败次数过多,请 {seconds} 秒后再试", "Too many failed logins; try again in {seconds}s"
)
REGISTRATION_THROTTLED = Message(
    "注册过于频繁,请 {seconds} 秒后再试", "Too many registrations; try again in {seconds}s"
)
AUTH_BUSY = Message("服务繁忙,请稍后再试", "The service is busy; try again shortly")
ADMIN_ACCOUNT_MISMATCH = Message(
    "已有同名账户,但邮箱或密码不符;如确要将其提升为管理员,请明确使用 --promote",
    "An account of that name exists but its email or password does not match; "
    "use --promote to make it an admin anyway",
)
USER_GONE = Message("用户不存在", "User not found")
PASSWORD_TOO_SHORT = Message(
    "密码至少需要 {min} 个字符", "The password must have at least {min} characters"
)
PASSWORD_TOO_LONG = Message(
    "密码不能超过 {max} 个字符", "The password must have at most {max} characters"
)
PASSWORD_NEEDS_MIX = Message(
    "密码必须同时包含字母和数字", "The password must contain both letters and digits"
)
PASSWORD_TOO_COMMON = Message(
    "密码过于常见,请换一个", "That password is too common; choose another"
)
PASSWORD_CONTAINS_NAME = Message("密码不能包含用户名", "The password must not contain the username")
