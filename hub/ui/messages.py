"""The dashboard's message catalogue (Chinese and English) and language choice.

The language is ``?lang=zh|en`` (remembered in the session), else Chinese:
the hub's users are Chinese archive managers and administrators, whose
browsers often ask for English (an English operating system), so the
indicator and rule labels are Chinese unless English is chosen.
"""

from __future__ import annotations

from flask import request
from flask import session

LANGUAGES = ("zh", "en")

MESSAGES: dict[str, tuple[str, str]] = {
    # key: (zh, en)
    "app.title": ("居民健康档案质控", "Health-record quality dashboard"),
    "nav.overview": ("总览", "Overview"),
    "nav.gaps": ("缺项名单", "People with gaps"),
    "nav.inbox": ("接收队列", "Inbox"),
    "nav.dead": ("死信", "Dead letters"),
    "nav.deliveries": ("外发消息", "Outbound deliveries"),
    "nav.dead_out": ("外发死信", "Outbound dead letters"),
    "nav.logout": ("退出", "Log out"),
    "login.title": ("登录", "Log in"),
    "login.username": ("用户名", "User name"),
    "login.password": ("密码", "Password"),
    "login.submit": ("登录", "Log in"),
    "login.invalid": ("用户名或密码错误", "Wrong user name or password"),
    "login.locked": ("账户已暂时锁定，请稍后再试", "Account locked for a while; try again later"),
    "jurisdiction": ("辖区", "Jurisdiction"),
    "jurisdiction.all": ("全部", "All"),
    "period": ("统计期", "Period"),
    "show": ("查看", "Show"),
    "refresh": ("重新核查", "Re-run audit"),
    "computed_at": ("核查时间", "Audited at"),
    "no_audit": (
        "该统计期尚未核查。请点击“重新核查”或运行 hub audit completeness。",
        "No audit for this period yet. Press “Re-run audit” or run hub audit completeness.",
    ),
    "kpi.people": ("建档人数", "People"),
    "kpi.with_gaps": ("有缺项人数", "People with gaps"),
    "kpi.overdue": ("逾期人数", "People overdue"),
    "kpi.complete": ("完整率", "Complete"),
    "chart.completeness": ("各项规则完成率", "Completeness by rule"),
    "chart.overdue": ("逾期服务", "Overdue services"),
    "chart.colours": ("五色分类分布", "Five-colour distribution"),
    "chart.trend": ("指标趋势", "Indicators over time"),
    "indicators": ("考核指标", "Indicators"),
    "indicator": ("指标", "Indicator"),
    "numerator": ("分子", "Numerator"),
    "denominator": ("分母", "Denominator"),
    "rate": ("比率", "Rate"),
    "target": ("目标", "Target"),
    "source": ("分母来源", "Denominator source"),
    "children": ("下级辖区", "Jurisdictions below"),
    "people": ("人数", "People"),
    "name": ("姓名", "Name"),
    "age": ("年龄", "Age"),
    "gender": ("性别", "Sex"),
    "record_no": ("档案编号", "Record number"),
    "village": ("村/居", "Village"),
    "gaps": ("缺项", "Gaps"),
    "overdue": ("逾期", "Overdue"),
    "next_due": ("最早到期", "Next due"),
    "colour": ("五色", "Colour"),
    "rule": ("规则", "Rule"),
    "item": ("项目", "Item"),
    "all": ("全部", "All"),
    "overdue_only": ("仅逾期", "Overdue only"),
    "sort": ("排序", "Sort"),
    "filter": ("筛选", "Filter"),
    "export.csv": ("导出 CSV", "Export CSV"),
    "export.xlsx": ("导出 Excel", "Export Excel"),
    "page": ("页", "Page"),
    "prev": ("上一页", "Previous"),
    "next": ("下一页", "Next"),
    "of": ("共", "of"),
    "timeline": ("终身档案时间轴", "Lifetime record"),
    "date": ("日期", "Date"),
    "type": ("类型", "Type"),
    "detail": ("内容", "Detail"),
    "resident_id": ("身份证号", "Resident ID"),
    "birth_date": ("出生日期", "Birth date"),
    "phone": ("电话", "Phone"),
    "address": ("住址", "Address"),
    "missing": ("缺项及到期日", "Missing items and due dates"),
    "slot": ("第 {n} 次", "no. {n}"),
    "none": ("无", "none"),
    "status": ("状态", "Status"),
    "site": ("来源系统", "Site"),
    "received": ("接收时间", "Received"),
    "attempts": ("尝试次数", "Attempts"),
    "format": ("格式", "Format"),
    "source_key": ("消息标识", "Message key"),
    "issues": ("问题", "Issues"),
    "body": ("原始内容", "Raw content"),
    "colour.red": ("红色", "red"),
    "colour.yellow": ("黄色", "yellow"),
    "colour.blue": ("蓝色", "blue"),
    "colour.orange": ("橙色", "orange"),
    "colour.green": ("绿色", "green"),
    "colour.none": ("未分类", "none"),
    "gender.male": ("男", "male"),
    "gender.female": ("女", "female"),
    "forbidden": ("无权访问该辖区", "You may not see this jurisdiction"),
    "error": ("错误", "Error"),
}


def current_language() -> str:
    wanted = request.args.get("lang")
    if wanted in LANGUAGES:
        session["lang"] = wanted
        return wanted
    if session.get("lang") in LANGUAGES:
        return session["lang"]
    return "zh"


def translate(key: str, lang: str, **values) -> str:
    pair = MESSAGES.get(key)
    if pair is None:
        return key
    text = pair[0] if lang == "zh" else pair[1]
    return text.format(**values) if values else text
