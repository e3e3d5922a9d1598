// Starts GOV.UK Frontend's components. Loaded as a module from 'self' so the pages need no
// inline script (the Content-Security-Policy forbids it). Browsers that run modules are the
// ones GOV.UK Frontend supports, so the body classes its CSS expects are set here.
import { initAll } from "./govuk-frontend.min.js";

document.body.classList.add("js-enabled", "govuk-frontend-supported");
initAll();
