// Progressive enhancement of the Keys pages. Every form works without this file;
// the server checks every value again and shows its errors next to the field.
// The rules and messages come from the server (data-rules), built from the KMS's
// own constants, so these checks match the server's.
"use strict";

(() => {
  const format = (text, values) =>
    text.replace(/\{(\w+)\}/g, (whole, name) => (name in values ? values[name] : whole));

  const showError = (element, message) => {
    if (!element) {
      return;
    }
    element.textContent = message || "";
    element.hidden = !message;
  };

  const markInvalid = (input, invalid) => {
    if (invalid) {
      input.setAttribute("aria-invalid", "true");
    } else {
      input.removeAttribute("aria-invalid");
    }
  };

  // --- Rules ------------------------------------------------------------------------

  const tagProblem = (rules, key, value, isKey) => {
    const tag = rules.tag;
    const text = isKey ? key : value;
    const messages = rules.messages;
    if (isKey && text.length === 0) {
      return messages.tagKeyEmpty;
    }
    if (text.length > tag.maxLength) {
      return messages.tagTooLong;
    }
    if (!new RegExp(`^(?:${tag.pattern})$`).test(text)) {
      return messages.tagCharacters;
    }
    if (isKey && tag.reservedPrefixes.some((prefix) => text.toLowerCase().startsWith(prefix))) {
      return messages.tagReserved;
    }
    return "";
  };

  const aliasProblem = (rules, value) => {
    if (!value) {
      return "";
    }
    const alias = rules.alias;
    const full = value.startsWith(alias.prefix) ? value : alias.prefix + value;
    const rest = full.slice(alias.prefix.length);
    if (full.length > alias.maxLength || !new RegExp(`^(?:${alias.pattern})$`).test(rest)) {
      return rules.messages.aliasInvalid;
    }
    if (full.slice(0, alias.reservedPrefix.length).toLowerCase() === alias.reservedPrefix) {
      return rules.messages.aliasReserved;
    }
    return "";
  };

  const arnProblem = (rules, arn, role) => {
    const match = new RegExp(`^(?:${rules.principal.pattern})$`).exec(arn);
    if (!match || !(match.groups.user || match.groups.role)) {
      return format(rules.messages.arnInvalid, { arn });
    }
    if (role === "cross_account_users" && match.groups.account === rules.principal.account) {
      return format(rules.messages.arnOwnAccount, { arn });
    }
    return "";
  };

  // --- Tag rows ---------------------------------------------------------------------

  const checkTagRow = (rules, row, seen) => {
    const keyInput = row.querySelector(".tag-key");
    const valueInput = row.querySelector(".tag-value");
    const error = row.querySelector(".tag-error");
    if (!keyInput || !valueInput) {
      return true;
    }
    const key = keyInput.value;
    const value = valueInput.value;
    let problem = "";
    let onKey = true;
    if (key === "" && value === "" && row.classList.contains("tag-row")) {
      problem = "";
    } else {
      problem = tagProblem(rules, key, value, true);
      if (!problem) {
        problem = tagProblem(rules, key, value, false);
        onKey = !problem;
      }
      if (!problem && seen) {
        if (seen.has(key)) {
          problem = rules.messages.tagDuplicate;
        }
        seen.add(key);
      }
    }
    markInvalid(keyInput, problem && onKey);
    markInvalid(valueInput, problem && !onKey);
    showError(error, problem);
    return !problem;
  };

  const setUpTagRows = (rules, form) => {
    const list = form.querySelector("#tag-rows");
    const addButton = form.querySelector("#add-tag");
    const limitError = form.querySelector("#f-tags-error");
    if (!list || !addButton) {
      return () => true;
    }
    const rows = () => Array.from(list.querySelectorAll(".tag-row"));
    const checkAll = () => {
      const seen = new Set();
      return rows().map((row) => checkTagRow(rules, row, seen)).every(Boolean);
    };
    const renumber = () => {
      rows().forEach((row, index) => {
        const n = index + 1;
        for (const element of row.querySelectorAll("[id]")) {
          element.id = element.id.replace(/-\d+(-error)?$/, `-${n}$1`);
        }
        for (const label of row.querySelectorAll("label")) {
          label.htmlFor = label.htmlFor.replace(/-\d+$/, `-${n}`);
          label.textContent = label.textContent.replace(/\d+\s*$/, `${n}`);
        }
        for (const input of row.querySelectorAll("input")) {
          input.setAttribute("aria-describedby", `f-tag-${n}-error`);
        }
        const remove = row.querySelector(".remove-tag");
        remove.textContent = remove.textContent.replace(/\d+\s*$/, `${n}`);
        remove.value = `remove-tag-${index}`;
      });
    };
    const bindRow = (row) => {
      for (const input of row.querySelectorAll("input")) {
        input.addEventListener("input", checkAll);
      }
      const remove = row.querySelector(".remove-tag");
      remove.type = "button";
      remove.addEventListener("click", () => {
        const next = row.nextElementSibling || row.previousElementSibling;
        if (rows().length === 1) {
          for (const input of row.querySelectorAll("input")) {
            input.value = "";
          }
        } else {
          row.remove();
        }
        renumber();
        checkAll();
        showError(limitError, "");
        addButton.disabled = false;
        const focusTarget = (next && next.isConnected ? next : rows()[0]).querySelector("input");
        focusTarget.focus();
      });
    };
    rows().forEach(bindRow);
    addButton.type = "button";
    addButton.disabled = false;
    addButton.addEventListener("click", () => {
      if (rows().length >= rules.tag.maxTags) {
        showError(limitError, rules.messages.tagLimit);
        return;
      }
      const template = rows()[0];
      const row = template.cloneNode(true);
      for (const input of row.querySelectorAll("input")) {
        input.value = "";
        input.removeAttribute("aria-invalid");
      }
      showError(row.querySelector(".tag-error"), "");
      list.appendChild(row);
      bindRow(row);
      renumber();
      row.querySelector("input").focus();
    });
    return checkAll;
  };

  // --- Alias and ARNs ---------------------------------------------------------------

  const setUpAlias = (rules, root) => {
    const input = root.querySelector("#f-alias");
    const error = root.querySelector("#f-alias-error");
    if (!input) {
      return () => true;
    }
    const check = () => {
      const problem = aliasProblem(rules, input.value.trim());
      markInvalid(input, problem);
      showError(error, problem);
      return !problem;
    };
    input.addEventListener("input", check);
    return check;
  };

  const setUpArns = (rules, root) => {
    const areas = Array.from(root.querySelectorAll("textarea.arn-list"));
    const checks = areas.map((area) => {
      const role = area.dataset.role;
      const error = root.querySelector(`#f-${role}-error`);
      const check = () => {
        const arns = area.value.split(/[\n,]/).map((line) => line.trim()).filter(Boolean);
        const problem = arns.map((arn) => arnProblem(rules, arn, role)).find(Boolean) || "";
        markInvalid(area, problem);
        showError(error, problem);
        return !problem;
      };
      area.addEventListener("input", check);
      return check;
    });
    return () => checks.map((check) => check()).every(Boolean);
  };

  // --- The external key ID, checked with the XKI proxy ------------------------------

  const setUpExternalKeyCheck = (rules, form) => {
    const input = form.querySelector("#f-external_key_id");
    const instance = form.querySelector("#f-instance");
    const error = form.querySelector("#f-external_key_id-error");
    const status = form.querySelector("#f-external_key_id-status");
    const token = document.querySelector('meta[name="csrf-token"]');
    if (!input || !instance || !token) {
      return;
    }
    let last = "";
    const check = async () => {
      const value = input.value.trim();
      const asked = `${instance.value}\n${value}`;
      if (!value || asked === last) {
        return;
      }
      last = asked;
      status.textContent = rules.messages.checking;
      const body = new URLSearchParams({ instance: instance.value, external_key_id: value });
      try {
        const response = await fetch(form.dataset.checkUrl, {
          method: "POST",
          headers: { "X-CSRF-Token": token.content },
          body,
          credentials: "same-origin",
        });
        const result = await response.json();
        if (`${instance.value}\n${input.value.trim()}` !== asked) {
          return;
        }
        if (result.ok) {
          status.textContent = result.message;
          markInvalid(input, false);
          showError(error, "");
        } else {
          status.textContent = "";
          markInvalid(input, true);
          showError(error, result.code ? `${result.code}: ${result.message}` : result.message);
        }
      } catch (failure) {
        status.textContent = format(rules.messages.checkFailed, { reason: String(failure) });
      }
    };
    input.addEventListener("change", check);
    instance.addEventListener("change", () => {
      last = "";
      check();
    });
  };

  // --- Custom policy visibility -----------------------------------------------------

  const setUpPolicyMode = (form) => {
    const custom = form.querySelector("#f-policy-custom");
    const panel = form.querySelector("#custom-policy");
    if (!custom || !panel) {
      return;
    }
    const update = () => {
      panel.hidden = !custom.checked;
    };
    for (const radio of form.querySelectorAll("input[name=policy_mode]")) {
      radio.addEventListener("change", update);
    }
    update();
  };

  document.addEventListener("DOMContentLoaded", () => {
    const holder = document.querySelector("[data-rules]");
    if (!holder) {
      return;
    }
    const rules = JSON.parse(holder.dataset.rules);

    const create = document.getElementById("create-key-form");
    if (create) {
      const checkTags = setUpTagRows(rules, create);
      const checkAlias = setUpAlias(rules, create);
      const checkArns = setUpArns(rules, create);
      setUpExternalKeyCheck(rules, create);
      setUpPolicyMode(create);
      create.addEventListener("submit", (event) => {
        const submitter = event.submitter;
        if (submitter && submitter.value !== "create") {
          return;
        }
        const custom = create.querySelector("#f-policy-custom");
        const ok = [checkTags(), checkAlias(), !custom || !custom.checked || checkArns()];
        if (!ok.every(Boolean)) {
          event.preventDefault();
          const invalid = create.querySelector("[aria-invalid=true]");
          if (invalid) {
            invalid.focus();
          }
        }
      });
      return;
    }

    // The details page: the alias, tag and role forms.
    for (const form of document.querySelectorAll("form.alias-form")) {
      const check = setUpAlias(rules, form);
      form.addEventListener("submit", (event) => {
        if (!check()) {
          event.preventDefault();
        }
      });
    }
    for (const form of document.querySelectorAll("form.tag-form")) {
      const check = () => checkTagRow(rules, form, null);
      for (const input of form.querySelectorAll("input[type=text]")) {
        input.addEventListener("input", check);
      }
      form.addEventListener("submit", (event) => {
        if (!check()) {
          event.preventDefault();
        }
      });
    }
    const roles = document.getElementById("roles-form");
    if (roles) {
      const check = setUpArns(rules, roles);
      roles.addEventListener("submit", (event) => {
        if (!check()) {
          event.preventDefault();
        }
      });
    }
  });
})();
