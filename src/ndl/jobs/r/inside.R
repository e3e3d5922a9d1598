# The first step of an R job inside the sandbox: Rscript --vanilla inside.R (ndl.jobs.r_jobs).
#
# It loads the helpers (ndl.R), parses every R file of the bundle before running any (the hub
# has no R to check syntax with), then sources the entry. On a failure the details go to the
# job's log (stderr, which only an output checker can release); the researcher is told a safe
# summary written to .ndl/error.json: the kind of condition and where in their own code it
# happened, never the message, which can hold a value read from the data, except in a mock run
# or for the helpers' own JobError (whose words ndl wrote), as ndl/jobs/inside.py does.
local({
  code <- normalizePath(Sys.getenv("NDL_R_CODE"), mustWork = TRUE)
  entry <- Sys.getenv("NDL_R_ENTRY")
  out <- Sys.getenv("NDL_R_OUT")
  mock <- identical(Sys.getenv("NDL_R_MOCK"), "true")
  dir.create(file.path(out, ".ndl"), recursive = TRUE, showWarnings = FALSE)

  helpers <- new.env()
  sys.source(Sys.getenv("NDL_R_HELPERS"), envir = helpers, keep.source = FALSE)
  attach(helpers, name = "ndl", warn.conflicts = FALSE)

  fail <- function(kind, where, message) {
    fields <- c(list(type = kind), where)
    if (mock || identical(kind, "JobError")) fields$message <- substr(message, 1L, 500L)
    writeLines(helpers$.ndl_json(fields), file.path(out, ".ndl", "error.json"))
    quit(save = "no", status = 1L)
  }

  # 1. Syntax: every R file, the entry first.
  files <- list.files(code, pattern = "\\.[Rr]$", recursive = TRUE)
  for (rel in unique(c(entry, sort(files)))) {
    problem <- tryCatch({
      parse(file = file.path(code, rel), keep.source = FALSE, encoding = "UTF-8")
      NULL
    }, error = function(e) conditionMessage(e))
    if (!is.null(problem)) {
      # R says "<file>:<line>:<column>: unexpected ..." (or "... at line <n>").
      found <- regmatches(problem, regexec(":([0-9]+):[0-9]+:|line ([0-9]+)", problem))[[1]]
      line <- suppressWarnings(as.integer(found[found != ""][2L]))
      message("syntax error in ", rel, ": ", problem)
      fail("SyntaxError", if (is.na(line)) list(file = rel) else list(file = rel, line = line),
           problem)
    }
  }

  # 2. Run the entry, from the output folder (as a Python job runs), in the global
  # environment, with source references kept so an error can be placed on its line.
  options(keep.source = TRUE, warn = 1)
  where <- list()
  place <- function(e) {
    prefix <- paste0(code, "/")
    for (call in sys.calls()) {
      ref <- attr(call, "srcref")
      if (is.null(ref)) next
      file <- attr(ref, "srcfile")$filename
      if (!is.character(file) || length(file) != 1L) next
      wd <- attr(ref, "srcfile")$wd
      if (!startsWith(file, "/") && is.character(wd)) file <- file.path(wd, file)
      file <- normalizePath(file, mustWork = FALSE)
      if (startsWith(file, prefix)) {
        where <<- list(file = substring(file, nchar(prefix) + 1L), line = as.integer(ref[[1L]]))
      }
    }
  }
  failed <- tryCatch(withCallingHandlers({
    source(file.path(code, entry), local = globalenv(), encoding = "UTF-8")
    NULL
  }, error = place), error = function(e) e)
  if (!is.null(failed)) {
    message("Error", if (length(where)) sprintf(" at %s line %d", where$file, where$line),
            " (", class(failed)[[1L]], "): ", conditionMessage(failed))
    fail(class(failed)[[1L]], where, conditionMessage(failed))
  }
})
