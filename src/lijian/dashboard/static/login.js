// The login page: language switch, and the error message in the chosen language.
"use strict";

(function () {
  const i18n = window.LIJIAN_I18N;
  const MESSAGES = {
    bad_credentials: { zh: "用户名或密码错误", en: "Wrong user name or password" },
    form_expired: { zh: "登录页已过期，请重试", en: "The login form expired, please try again" },
    throttled: { zh: "失败次数过多，请稍后再试", en: "Too many failed attempts, try again later" },
  };
  function render() {
    i18n.apply();
    const box = document.getElementById("error");
    const msg = MESSAGES[box.getAttribute("data-code")];
    if (msg) box.textContent = msg[i18n.lang()];
  }
  document.getElementById("lang").addEventListener("click", function () {
    i18n.toggle();
    render();
  });
  render();
  const name = document.getElementById("username");
  (name.value ? document.getElementById("password") : name).focus();
})();
