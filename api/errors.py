"""One catalogue of errors: a stable machine-readable code per refusal, with its HTTP status.

Every refusal the API gives is an `ApiError` whose code is listed here (and in the README); the one
exception handler in `app.py` turns it into `{"error": {"code", "message", "messageEn", "messageZh"}}`:
`message` in the language the request's `Accept-Language` prefers (Chinese when it prefers `zh`, English
otherwise, also when the header is absent), and both beside it. Each code has its Chinese message in
`MESSAGES_ZH`; a refusal with a specific English message (naming a field, a line, a value) keeps it, and
its Chinese message is the catalogue's followed by that English detail.
"""

from __future__ import annotations

# code -> (HTTP status, what it means)
CATALOGUE: dict[str, tuple[int, str]] = {
    # malformed input
    "invalid_request": (400, "the body is not the JSON the endpoint takes"),
    "body_too_large": (413, "the body is over the size limit"),
    "malformed_hex": (400, "a bytes value is not 0x-prefixed hex"),
    "wrong_length": (400, "a bytes value has the wrong length"),
    "malformed_integer": (400, "an integer field is not a JSON integer"),
    "integer_out_of_range": (400, "an integer does not fit its protocol type"),
    "malformed_order": (400, "the order object lacks or adds fields"),
    "malformed_message": (400, "the command message lacks or adds fields"),
    "malformed_details": (400, "details is not a valid details object"),
    "unknown_type": (400, "unknown command type"),
    "too_many_items": (400, "a bulk request holds more items than allowed"),
    "malformed_csv": (400, "a CSV body is not the expected table; the message names the line"),
    "malformed_certificate": (400, "the body is not a service-record certificate (format, fields or their types)"),
    # signatures and stations
    "bad_signature": (400, "the signature is malformed, high-s, or recovers no key"),
    "station_unknown": (403, "the order's signer is not a registered station"),
    "station_removed": (403, "the order's signer is a removed station"),
    "station_wrong_district": (403, "the order's signer is a station of another district"),
    "unauthenticated": (401, "the request is not signed, or its signature or timestamp is wrong"),
    "request_replayed": (401, "the signed request's nonce was already used (a replay)"),
    "forbidden": (403, "the request's signer does not hold the role this needs"),
    "unauthorized": (403, "the command's signer does not hold the role it needs"),
    # order content
    "details_hash_mismatch": (422, "detailsHash is not the keccak256 of the canonical details"),
    "unknown_service_type": (422, "the service type is not in the protocol"),
    "invalid_minutes": (422, "minutes is zero or longer than the service lasted"),
    "minutes_over_limit": (422, "minutes is over the per-order maximum"),
    "invalid_time_range": (422, "endTime is before startTime"),
    "service_too_long": (422, "check-in to check-out lasts more than a day"),
    "end_time_in_future": (422, "endTime is in the future beyond the allowed clock skew"),
    "order_too_old": (422, "endTime is older than the accepted window"),
    "unknown_account": (422, "the volunteer, payer or recipient account is not registered"),
    "account_not_active": (422, "the volunteer, payer or recipient account is frozen or cancelled"),
    "volunteer_wrong_kind": (422, "the volunteer account is neither a volunteer nor a group"),
    "payer_is_volunteer": (422, "the payer and the volunteer are the same account"),
    "insufficient_balance": (422, "the payer's balance less minutes already promised does not cover the order"),
    "location_mismatch": (422, "check-in or check-out is too far from the recipient's registered location"),
    "qualification_required": (422, "the professional service type needs a registered qualification"),
    "recipient_other_district": (422, "a service's recipient is an account of another district than the order's"),
    "payer_not_linked": (422, "the payer has not linked the recipient (or the transfer's receiver) with LinkAccounts"),
    "transfer_other_district": (422, "a transfer is signed by a station of another district than the payer's"),
    "recipient_no_location": (422, "the recipient has no registered location and no administrator's exemption"),
    "station_daily_limit": (422, "the station's orders of the day would be over its ceiling of minutes a day"),
    "details_too_large": (413, "the order's details (or their notes) are over the size limit"),
    # state conflicts
    "order_id_conflict": (409, "an order with this orderId and other content exists"),
    "volunteer_overlap": (409, "another order of the same volunteer overlaps in time"),
    "order_not_anchored": (409, "the order is not anchored yet"),
    "nonce_used": (409, "the signer already used this nonce"),
    "command_refused": (422, "the contract refused the command"),
    # people and grants (api/people.py)
    "person_exists": (409, "a person with this card number is already registered"),
    "already_granted": (409, "the account's monthly grant of this period is already recorded"),
    "not_eligible": (422, "a monthly grant to a person with no eligibility category"),
    "account_wrong_kind": (422, "the account is not of the kind this needs (a group, a volunteer member)"),
    "card_other_district": (422, "the card number does not carry the district code of the district registering it"),
    "account_mismatch": (422, "the person's district or kind differs from the account's on chain"),
    "verification_busy": (429, "as many certificates are being verified as the service allows: try again shortly"),
    # lookups
    "not_found": (404, "no such resource"),
    # the chain
    # the service's own processes
    "writer_unavailable": (503, "the order writer is restarting or could not store the orders; try again"),
    "chain_unavailable": (503, "the chain node does not answer; try again"),
    "chain_refused": (502, "the chain node refused the relayer's transaction"),
    "chain_timeout": (504, "the transaction was not mined in time; it may still be"),
    "mirror_rebuilding": (503, "the chain lost blocks and the service is rebuilding its copy of the chain's state; send the order again in a few seconds"),
    # card look-ups and voice confirmations
    "too_many_requests": (429, "too many failed look-ups (or ID-number checks) from this client or signer; wait and try again"),
    "recording_mismatch": (422, "the recording's keccak256 is not the one the order's details confirm"),
    "recording_not_expected": (422, "the order's confirmation is not by voice, or names no recording"),
}

# code -> the Chinese message (一条错误一条中文说明); a test checks that every code of CATALOGUE has one.
MESSAGES_ZH: dict[str, str] = {
    "invalid_request": "请求内容不是该接口接受的 JSON",
    "body_too_large": "请求体超过大小上限",
    "malformed_hex": "字节值不是以 0x 开头的十六进制",
    "wrong_length": "字节值长度不对",
    "malformed_integer": "整数字段不是 JSON 整数",
    "integer_out_of_range": "整数超出协议类型的范围",
    "malformed_order": "订单对象缺少或多出字段",
    "malformed_message": "命令消息缺少或多出字段",
    "malformed_details": "details 不是有效的服务详情对象",
    "unknown_type": "未知的命令类型",
    "too_many_items": "批量请求的条目超过上限",
    "malformed_csv": "CSV 内容不是要求的表格（见所指行）",
    "malformed_certificate": "请求体不是服务记录证明（格式、字段或类型不符）",
    "bad_signature": "签名格式错误、s 值过高或无法恢复公钥",
    "station_unknown": "订单签名者不是已登记的服务站点",
    "station_removed": "订单签名者是已撤销的服务站点",
    "station_wrong_district": "订单签名者是其他区的服务站点",
    "unauthenticated": "请求未签名，或签名、时间戳不正确",
    "forbidden": "请求签名者没有此操作所需的角色",
    "unauthorized": "命令签名者没有所需的角色",
    "details_hash_mismatch": "detailsHash 与规范化服务详情的 keccak256 不符",
    "unknown_service_type": "协议中没有该服务类型",
    "invalid_minutes": "分钟数为零或超过服务实际时长",
    "minutes_over_limit": "分钟数超过单笔订单上限",
    "invalid_time_range": "结束时间早于开始时间",
    "service_too_long": "签到到签退超过一天",
    "end_time_in_future": "结束时间晚于当前时间（超出允许的时钟误差）",
    "order_too_old": "结束时间早于可接受的期限",
    "unknown_account": "志愿者、付款方或服务对象的账户未登记",
    "account_not_active": "志愿者、付款方或服务对象的账户已冻结或注销",
    "volunteer_wrong_kind": "志愿者账户既不是个人志愿者也不是团体志愿者",
    "payer_is_volunteer": "付款方与志愿者是同一账户",
    "insufficient_balance": "付款方余额扣除待上链订单后不足以支付本订单",
    "location_mismatch": "签到或签退位置离服务对象登记地址太远",
    "qualification_required": "专业服务类型需要登记的专业资质",
    "order_id_conflict": "已有相同 orderId 而内容不同的订单",
    "volunteer_overlap": "该志愿者的另一订单时间重叠",
    "order_not_anchored": "订单尚未上链",
    "nonce_used": "签名者已用过此 nonce",
    "command_refused": "合约拒绝了该命令",
    "person_exists": "该卡号的人员已登记",
    "already_granted": "该账户本期的每月发放已记录",
    "not_eligible": "无重点发放类别的人员不能每月发放时间",
    "account_wrong_kind": "账户类型不符合要求（团体、个人志愿者成员）",
    "account_mismatch": "人员的所属区或类型与链上账户不符",
    "not_found": "没有该资源",
    "writer_unavailable": "订单写入进程正在重启或未能保存订单，请稍后重试",
    "chain_unavailable": "区块链节点无响应，请稍后重试",
    "chain_refused": "区块链节点拒绝了上链服务的交易",
    "chain_timeout": "交易未能按时打包，稍后可能仍会上链",
    "mirror_rebuilding": "区块链丢失了区块，服务正在重建链上状态副本，请几秒后重新提交订单",
    "too_many_requests": "本客户端查询失败次数过多，请稍后再试",
    "request_replayed": "该签名请求（其随机数）已使用过，不能重放：请重新签名",
    "recipient_other_district": "服务对象不是本订单所在区的账户",
    "payer_not_linked": "付款人未绑定该服务对象（或转赠接收人）为亲属（LinkAccounts）",
    "transfer_other_district": "转赠须由付款人所在区的服务站点签署",
    "recipient_no_location": "服务对象未登记地址位置，且无管理员登记的豁免",
    "station_daily_limit": "该服务站点当日订单分钟数将超过每日上限",
    "details_too_large": "订单详情（或其备注）超过大小上限",
    "card_other_district": "卡号所含区划代码与登记的区不符",
    "verification_busy": "正在核验的证明数量已达上限，请稍后再试",
    "recording_mismatch": "录音的 keccak256 与订单详情中确认的不符",
    "recording_not_expected": "该订单不是语音确认，或未写明录音",
}

LANGUAGES = ("zh", "en")


def preferred_language(accept_language: str | None) -> str:
    """`zh` or `en`: the one of the two that `Accept-Language` (RFC 9110, with q-values) prefers; `en`
    when the header is absent or names neither."""
    best, best_q = "en", -1.0
    for position, part in enumerate((accept_language or "").split(",")):
        tag, _, params = part.strip().partition(";")
        primary = tag.strip().lower().split("-")[0]
        if primary not in LANGUAGES:
            continue
        q = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if q > 0 and q > best_q:  # equal weights: the first listed wins
            best, best_q = primary, q
    return best


def request_language(request) -> str:
    """`preferred_language` of a Starlette request's Accept-Language."""
    return preferred_language(request.headers.get("accept-language"))


def messages(code: str, message: str | None = None) -> tuple[str, str]:
    """(English, Chinese) messages of a refusal: the catalogue's, or a specific English message with
    the catalogue's Chinese followed by that detail."""
    meaning = CATALOGUE[code][1] if code in CATALOGUE else None
    zh = MESSAGES_ZH.get(code)
    english = message or meaning or code
    if zh is None:
        return english, english
    if english == meaning:
        return english, zh
    return english, f"{zh}（{english}）"


def localize(body: dict, language: str) -> dict:
    """An answer with an `error` object `{code, message}` (or a bulk result holding one) given
    `messageEn`, `messageZh` and `message` in `language`; other bodies unchanged. Returns a copy."""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict) or "code" not in error:
        return body
    english, chinese = error.get("messageEn"), error.get("messageZh")
    if english is None or chinese is None:
        english, chinese = messages(error["code"], error.get("message"))
    return {**body, "error": {**error, "message": chinese if language == "zh" else english, "messageEn": english, "messageZh": chinese}}


class ApiError(Exception):
    def __init__(self, code: str, message: str | None = None, *, headers: dict[str, str] | None = None):
        if code not in CATALOGUE:
            raise ValueError(f"error code {code!r} is not in the catalogue")
        self.code = code
        self.status = CATALOGUE[code][0]
        self.message = message or CATALOGUE[code][1]
        self.headers = headers  # extra answer headers (Retry-After of a 429)
        super().__init__(f"{code}: {self.message}")

    def body(self, language: str = "en") -> dict:
        """`{"error": {code, message, messageEn, messageZh}}`, `message` in `language`."""
        return localize({"error": {"code": self.code, "message": self.message}}, language)
