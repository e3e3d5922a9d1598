# ndl.R: what an R job's code calls at the datasite, the R twin of Python's ndl.job.
#
#   pupils <- ndl_dataset("dfe/pupils")                  # a data.frame ("pupils" works too)
#   ndl_table("fsm_by_sen", pupils, by = c("sen_status", "fsm"))            # counts per cell
#   ndl_table("mean_score", pupils, by = "fsm", value = "ks2_score", agg = "mean")
#   ndl_text("notes", "Method: ...")
#
# Each helper writes its output and leaves *evidence* (the rows it was given, only the columns
# it used, as CSV) plus one JSON line in .ndl/records.jsonl, with the fields Python's helper
# writes. The runner does not trust these files: a separate step of ndl's own recomputes every
# table from the evidence, and what is checked and released is that recomputation.
#
# The runner sets the configuration as plain "field<TAB>field" lines (base R reads no JSON):
# NDL_R_OUT, the output folder; NDL_R_OUTPUTS, "name<TAB>kind" per declared output;
# NDL_R_DATASETS, "id<TAB>csv path<TAB>column classes" per granted dataset. No figures or
# models yet: their helpers say so.

.ndl_fail <- function(message) {
  # Classed "JobError" like Python's: the runner knows the name, and tells the researcher their
  # use of a helper was wrong without repeating the message (it may quote a value).
  stop(structure(class = c("JobError", "error", "condition"),
                 list(message = message, call = NULL)))
}

.ndl_setting <- function(var) {
  value <- Sys.getenv(var, unset = NA)
  if (is.na(value)) {
    .ndl_fail(paste("the ndl_* helpers work only inside a job: run the bundle with",
                    "'ndl run BUNDLE --mock' (or submit it with 'ndl submit')"))
  }
  value
}

.ndl_rows <- function(var) {
  text <- .ndl_setting(var)
  if (!nzchar(text)) return(list())
  lines <- strsplit(text, "\n", fixed = TRUE)[[1]]
  lapply(lines, function(line) strsplit(line, "\t", fixed = TRUE)[[1]])
}

.ndl_out <- function() .ndl_setting("NDL_R_OUT")

.ndl_outputs <- function() {
  rows <- .ndl_rows("NDL_R_OUTPUTS")
  stats::setNames(vapply(rows, function(r) r[[2]], ""), vapply(rows, function(r) r[[1]], ""))
}

.ndl_is_name <- function(x) is.character(x) && length(x) == 1L && !is.na(x) && nzchar(x)

.ndl_declared <- function(name, kind) {
  if (!.ndl_is_name(name)) {
    .ndl_fail("an output's name is one string, as declared in ndl-job.toml")
  }
  outputs <- .ndl_outputs()
  if (!(name %in% names(outputs))) {
    declared <- if (length(outputs)) paste(sort(names(outputs)), collapse = ", ") else "none"
    .ndl_fail(sprintf(paste("output '%s' is not declared: add it to ndl-job.toml under",
                            "[[outputs]] (declared: %s)"), name, declared))
  }
  if (outputs[[name]] != kind) {
    .ndl_fail(sprintf("output '%s' is declared as a %s, not a %s", name, outputs[[name]], kind))
  }
}

.ndl_json_string <- function(x) {
  codes <- utf8ToInt(enc2utf8(x))
  parts <- vapply(codes, function(cp) {
    if (cp == 34L) "\\\"" else if (cp == 92L) "\\\\"
    else if (cp < 32L || cp == 127L) sprintf("\\u%04x", cp) else intToUtf8(cp)
  }, "")
  paste0("\"", paste(parts, collapse = ""), "\"")
}

.ndl_json_value <- function(v) {
  if (is.null(v)) return("null")
  if (is.list(v)) {
    return(paste0("[", paste(vapply(v, .ndl_json_value, ""), collapse = ", "), "]"))
  }
  if (is.numeric(v)) return(format(v, scientific = FALSE))
  .ndl_json_string(v)
}

# A JSON object from a named list: a character scalar is a string, a list an array, a number a
# number and NULL null (the fields' order kept, as Python's json.dumps keeps them).
.ndl_json <- function(fields) {
  parts <- character(0)
  for (key in names(fields)) {
    parts <- c(parts, paste0(.ndl_json_string(key), ": ", .ndl_json_value(fields[[key]])))
  }
  paste0("{", paste(parts, collapse = ", "), "}")
}

.ndl_record <- function(fields) {
  path <- file.path(.ndl_out(), ".ndl", "records.jsonl")
  dir.create(dirname(path), recursive = TRUE, showWarnings = FALSE)
  cat(.ndl_json(fields), "\n", file = path, append = TRUE, sep = "")
}

ndl_datasets <- function() {
  # The datasets this job may read (its grant's).
  sort(vapply(.ndl_rows("NDL_R_DATASETS"), function(r) r[[1]], ""))
}

ndl_dataset <- function(name) {
  # A granted dataset as a data.frame; name is its id ("dfe/pupils") or short name ("pupils").
  rows <- .ndl_rows("NDL_R_DATASETS")
  ids <- vapply(rows, function(r) r[[1]], "")
  i <- if (.ndl_is_name(name)) match(name, ids) else NA
  if (is.na(i) && .ndl_is_name(name)) i <- match(name, sub("^[^/]*/", "", ids))
  if (is.na(i)) {
    shown <- if (.ndl_is_name(name)) name else "?"
    .ndl_fail(sprintf("dataset '%s' is not granted to this job; it may read %s", shown,
                      paste(sort(ids), collapse = ", ")))
  }
  row <- rows[[i]]
  # Column classes from the Parquet schema, so "007" stays text and a count stays a number.
  classes <- if (length(row) >= 3L) strsplit(row[[3]], ",", fixed = TRUE)[[1]] else NA
  utils::read.csv(row[[2]], colClasses = classes, na.strings = c("", "nan"),
                  check.names = FALSE, stringsAsFactors = FALSE, encoding = "UTF-8")
}

.ndl_aggregate <- function(data, by, value, agg) {
  keys <- data[, by, drop = FALSE]
  label <- function(x) ifelse(is.na(x), "\001", as.character(x))
  group <- do.call(paste, c(unname(lapply(keys, label)), sep = "\037"))
  first <- !duplicated(group)
  groups <- factor(group, levels = group[first])
  result <- keys[first, , drop = FALSE]
  if (is.null(value)) {
    result[["count"]] <- as.vector(table(groups))
  } else {
    fun <- if (agg == "sum") function(v) sum(v, na.rm = TRUE) else
      function(v) mean(v, na.rm = TRUE)
    result[[paste0(agg, "_", value)]] <- unname(vapply(split(data[[value]], groups), fun, 0))
  }
  if (nrow(result) > 1L) result <- result[do.call(order, unname(as.list(result[by]))), ,
                                          drop = FALSE]
  rownames(result) <- NULL
  result
}

ndl_table <- function(name, data, by, value = NULL, agg = "count") {
  # A table of agg of value (or the count of rows) for each combination of the by columns.
  # Returns it (true values, for the job's own use); what is released is the runner's
  # recomputation from the evidence, after the disclosure checks.
  .ndl_declared(name, "table")
  if (!is.character(by) || length(by) < 1L || length(by) > 4L || anyNA(by)) {
    .ndl_fail(sprintf("output '%s': group by 1 to 4 columns, e.g. by = c(\"region\")", name))
  }
  if (!(.ndl_is_name(agg) && agg %in% c("count", "sum", "mean"))) {
    .ndl_fail(sprintf("output '%s': agg is one of count, sum, mean", name))
  }
  if ((agg == "count") != is.null(value)) {
    .ndl_fail(sprintf("output '%s': a count takes no value column; a %s needs one", name, agg))
  }
  if (!is.null(value) && !.ndl_is_name(value)) {
    .ndl_fail(sprintf("output '%s': value is the name of one column", name))
  }
  if (!is.data.frame(data)) {
    .ndl_fail(sprintf("output '%s': pass a data.frame (as ndl_dataset returns)", name))
  }
  columns <- c(by, value)
  if (anyDuplicated(columns)) {
    .ndl_fail(sprintf("output '%s': a column is named twice in by and value", name))
  }
  missing <- setdiff(columns, names(data))
  if (length(missing)) {
    .ndl_fail(sprintf("output '%s': no column '%s' in the data given (its columns: %s)", name,
                      missing[[1]], paste(names(data), collapse = ", ")))
  }
  if (!is.null(value) && !is.numeric(data[[value]])) {
    .ndl_fail(sprintf("output '%s': the value column '%s' is not numeric (as.numeric() it)",
                      name, value))
  }
  rel <- paste0(".ndl/evidence/", name, ".csv")
  path <- file.path(.ndl_out(), rel)
  dir.create(dirname(path), recursive = TRUE, showWarnings = FALSE)
  utils::write.csv(data[, columns, drop = FALSE], path, row.names = FALSE, na = "",
                   fileEncoding = "UTF-8")
  .ndl_record(list(name = name, kind = "table", by = as.list(by), value = value, agg = agg,
                   evidence = rel))
  .ndl_aggregate(data, by, value, agg)
}

ndl_text <- function(name, text) {
  # Release words of the job's own (methods, notes), for human review.
  .ndl_declared(name, "text")
  if (!is.character(text) || anyNA(text)) {
    .ndl_fail(sprintf("output '%s': text takes a string (several are joined by new lines)",
                      name))
  }
  path <- file.path(.ndl_out(), paste0(name, ".txt"))
  writeBin(charToRaw(enc2utf8(paste(text, collapse = "\n"))), path)
  .ndl_record(list(name = name, kind = "text"))
  invisible(path)
}

ndl_figure <- function(name, ...) {
  .ndl_fail(paste("figures are not offered for R jobs yet: release a table (ndl_table) or",
                  "words (ndl_text), or make the figure in a Python job (ndl.job.figure)"))
}

ndl_model <- function(name, ...) {
  .ndl_fail(paste("models are not offered for R jobs yet: release a table (ndl_table), or fit",
                  "the model in a Python job (ndl.job.model)"))
}
