// Labels in Chinese (default) and English. Elements carry data-i18n="key"; reason codes,
// categories, platforms and states are looked up with the same table.
"use strict";

window.LIJIAN_I18N = (function () {
  const zh = {
    title: "运营看板", connecting: "连接中", live: "实时", offline: "已断开",
    logout: "退出登录", login: "登录", username: "用户名", password: "密码",
    login_hint: "用户名：API 客户端文件（--clients）中角色为 operator 或 auditor 的 key_id，" +
      "密码：它的 secret。make serve 会打印 ops 与 audit 的密码。",
    role_operator: "运营", role_auditor: "审计",
    today_tranche: "今日额度", released: "已释放", held: "占用中", granted: "已核销",
    remaining: "剩余", sold_out_at: "抢完时间", next_release: "下次释放",
    draw: "抽签", draw_none: "先到先得", draw_commitment: "承诺", draw_seed: "种子",
    draw_waiting: "等待中",
    burn_down: "今日额度消耗（按分钟）", grants_per_s: "每秒核销笔数",
    last_second: "当前", peak_today: "今日峰值", holds_today: "今日笔数",
    budget_totals: "活动总额", budget: "总预算", granted_net: "已核销（净）",
    clawed_back: "已追回", gmv: "带动消费（GMV）", gmv_short: "GMV", leverage: "杠杆率",
    declines: "拒绝原因（本次启动以来）", by_platform: "各平台补贴", by_category: "各品类补贴",
    platform: "平台", count: "笔数", net_subsidy: "净补贴", discounts: "优惠", clawbacks: "追回",
    audit: "账本审计", audit_ok: "通过", audit_fail: "未通过", audit_pending: "尚未检查",
    checked_at: "检查时间", history: "每日历史", vouchers_by_day: "每日领券",
    vouchers_claimed: "领取", vouchers_used: "已使用", vouchers_expired: "过期未用",
    vouchers_expired_fen: "过期释放", date: "日期", state: "状态", holds: "笔数",
    peak_per_s: "峰值/秒", settlement: "结算", download_csv: "下载 CSV", total: "合计",
    none_yet: "暂无", feed_ok: "数据流正常", feed_behind: "落后条目", feed_problem: "数据流异常",
    burn_of: "额度消耗", no_data: "暂无数据", remaining_axis: "剩余额度",
    "state_scheduled": "未开始", "state_open": "进行中", "state_sold_out": "已抢完",
    "state_closed_for_day": "今日已结束", "state_ended": "活动已结束", "state_closed": "已结束",
    "reason_campaign_not_found": "活动不存在", "reason_campaign_not_started": "活动未开始",
    "reason_campaign_ended": "活动已结束", "reason_tranche_not_open": "未到释放时间",
    "reason_sold_out": "今日已抢完", "reason_budget_exhausted": "预算已用完",
    "reason_person_cap_reached": "个人额度已用完", "reason_person_count_limit": "次数已达上限",
    "reason_not_real_name_verified": "未实名认证", "reason_location_missing": "缺少定位",
    "reason_location_outside_city": "定位不在本市", "reason_address_outside_city": "收货地址不在本市",
    "reason_not_campaign_goods": "非活动商品", "reason_platform_not_participating": "平台未参与",
    "reason_payment_channel_not_supported": "支付渠道不支持",
    "reason_other_government_subsidy": "叠加其他政府补贴", "reason_discount_zero": "优惠为零",
    "reason_campaign_paused": "活动已暂停", "reason_person_blocked": "用户已屏蔽",
    "reason_sku_blocked": "商品已屏蔽", "state_paused": "已暂停",
    "reason_other": "其他",
    "cat_apparel_shoes_hats": "服饰鞋帽", "cat_home_textiles": "家居家纺",
    "cat_beauty_skincare": "美妆护肤", "cat_fresh_food": "生鲜食品",
    "cat_alcohol_beverages": "酒水饮料", "cat_sports_outdoor": "运动户外",
    "cat_auto_supplies": "汽车用品", "cat_nutrition_health": "营养保健",
    "cat_maternal_baby_toys": "母婴玩具", "cat_unknown": "未知品类",
    "platform_jd": "京东", "platform_vip": "唯品会", "platform_TOTAL": "合计",
    check_r1: "R1 预算：已核销 + 占用 ≤ 已释放 ≤ 预算；资金守恒",
    check_r7: "R7 个人上限：已用 + 占用 ≤ 上限",
    check_refunds: "退款：退卡 ≤ 实付，追回 ≤ 优惠",
    entries: "条账本记录", switch_to: "English",
  };
  const en = {
    title: "Operations dashboard", connecting: "connecting", live: "live", offline: "offline",
    logout: "Log out", login: "Log in", username: "User name", password: "Password",
    login_hint: "User name: the key_id of an operator or auditor client in the server's " +
      "clients file (--clients), password: its secret. " +
      "make serve prints the passwords of ops and audit.",
    role_operator: "operator", role_auditor: "auditor",
    today_tranche: "Today's tranche", released: "Released", held: "Held", granted: "Granted",
    remaining: "Remaining", sold_out_at: "Sold out at", next_release: "Next release",
    draw: "Draw", draw_none: "first come, first served", draw_commitment: "commitment",
    draw_seed: "seed", draw_waiting: "waiting",
    burn_down: "Today's tranche by minute", grants_per_s: "Grants per second",
    last_second: "Now", peak_today: "Peak today", holds_today: "Grants today",
    budget_totals: "Campaign totals", budget: "Budget", granted_net: "Granted (net)",
    clawed_back: "Clawed back", gmv: "GMV driven", gmv_short: "GMV", leverage: "Leverage",
    declines: "Declines by reason (since start)", by_platform: "Spend by platform",
    by_category: "Spend by category",
    platform: "Platform", count: "Count", net_subsidy: "Net subsidy", discounts: "Discounts",
    clawbacks: "Clawbacks", audit: "Ledger audit", audit_ok: "passed", audit_fail: "FAILED",
    audit_pending: "not checked yet", checked_at: "checked at", history: "History by day",
    vouchers_by_day: "Vouchers by day", vouchers_claimed: "Claimed", vouchers_used: "Used",
    vouchers_expired: "Expired unused", vouchers_expired_fen: "Released by expiry",
    date: "Date", state: "State", holds: "Grants", peak_per_s: "Peak/s",
    settlement: "Settlement", download_csv: "Download CSV", total: "Total",
    none_yet: "none yet", feed_ok: "feed in sync", feed_behind: "entries behind",
    feed_problem: "feed problem", burn_of: "Tranche of", no_data: "no data yet",
    remaining_axis: "remaining",
    "state_scheduled": "scheduled", "state_open": "open", "state_sold_out": "sold out",
    "state_closed_for_day": "closed for the day", "state_ended": "ended", "state_closed": "closed",
    "reason_campaign_not_found": "unknown campaign", "reason_campaign_not_started": "not started",
    "reason_campaign_ended": "campaign ended", "reason_tranche_not_open": "before release",
    "reason_sold_out": "sold out", "reason_budget_exhausted": "budget exhausted",
    "reason_person_cap_reached": "person cap reached", "reason_person_count_limit": "count limit",
    "reason_not_real_name_verified": "not real-name verified",
    "reason_location_missing": "no location", "reason_location_outside_city": "outside the city",
    "reason_address_outside_city": "address outside the city",
    "reason_not_campaign_goods": "not campaign goods",
    "reason_platform_not_participating": "platform not participating",
    "reason_payment_channel_not_supported": "channel not supported",
    "reason_other_government_subsidy": "other subsidy", "reason_discount_zero": "zero discount",
    "reason_campaign_paused": "campaign paused", "reason_person_blocked": "person blocked",
    "reason_sku_blocked": "SKU blocked", "state_paused": "paused",
    "reason_other": "other",
    "cat_apparel_shoes_hats": "Apparel, shoes, hats", "cat_home_textiles": "Home textiles",
    "cat_beauty_skincare": "Beauty, skincare", "cat_fresh_food": "Fresh food",
    "cat_alcohol_beverages": "Alcohol, beverages", "cat_sports_outdoor": "Sports, outdoor",
    "cat_auto_supplies": "Auto supplies", "cat_nutrition_health": "Nutrition, health",
    "cat_maternal_baby_toys": "Maternal, baby, toys", "cat_unknown": "unknown category",
    "platform_jd": "JD", "platform_vip": "Vipshop", "platform_TOTAL": "Total",
    check_r1: "R1 budget: granted + held <= released <= budget; money conserved",
    check_r7: "R7 person caps: used + held <= cap",
    check_refunds: "refunds: card refunds <= paid, clawbacks <= discount",
    entries: "ledger entries", switch_to: "中文",
  };
  const tables = { zh: zh, en: en };
  const KEY = "lijian.lang";
  let lang = "zh";
  try {
    lang = localStorage.getItem(KEY) === "en" ? "en" : "zh";
  } catch (e) { /* storage blocked: Chinese */ }

  function t(key, fallback) {
    const v = tables[lang][key];
    return v !== undefined ? v : (fallback !== undefined ? fallback : key);
  }
  function apply(root) {
    document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
    (root || document).querySelectorAll("[data-i18n]").forEach(function (el) {
      el.textContent = t(el.getAttribute("data-i18n"), el.textContent);
    });
    const button = document.getElementById("lang");
    if (button) button.textContent = t("switch_to");
  }
  function toggle() {
    lang = lang === "zh" ? "en" : "zh";
    try { localStorage.setItem(KEY, lang); } catch (e) { /* not remembered */ }
    apply();
  }
  return { t: t, apply: apply, toggle: toggle, lang: function () { return lang; } };
})();
