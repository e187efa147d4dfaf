// Progressive enhancement of the hyok console. Every page works without this file:
// forms that change state show a confirmation page when they arrive unconfirmed.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  // Ask in place before Connect and Disconnect, then send the form as confirmed.
  for (const form of document.querySelectorAll("form[data-confirm]")) {
    form.addEventListener("submit", (event) => {
      const confirmed = form.querySelector("input[name=confirmed]");
      if (!confirmed || confirmed.value === "yes") {
        return;
      }
      if (window.confirm(form.dataset.confirm)) {
        confirmed.value = "yes";
      } else {
        event.preventDefault();
      }
    });
  }

  // Show the VPC endpoint service field only with that connectivity.
  const connectivity = document.getElementById("f-connectivity");
  const vpcField = document.getElementById("f-vpc_endpoint_service");
  if (connectivity && vpcField) {
    const wrapper = vpcField.closest(".field");
    const update = () => {
      wrapper.hidden = connectivity.value !== "VPC_ENDPOINT_SERVICE" && vpcField.value === "";
    };
    connectivity.addEventListener("change", update);
    update();
  }
});
