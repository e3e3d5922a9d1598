"""Controlled-tier jobs as MCP tools: submit code to run at the data, follow it, read what was
released, and read approved code by its hash.

The tools call the hub's jobs API with the caller's own token (:mod:`ndl.mcp.library`), so an
agent may do exactly what its user may: submit only on a project's active grant, see only its
projects' jobs, and read outputs only once an output checker released them. A refusal comes
back as a tool error with the hub's message. ``read_job_outputs`` returns released outputs only,
even to an output checker (whose place to judge unreleased outputs is the checking page).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.types import CallToolResult, TextContent, ToolAnnotations
from pydantic import BaseModel, Field

from ndl.core.errors import InvalidInput
from ndl.jobs.report import OutputReport
from ndl.jobs.views import CodeView, JobView, OutputFile
from ndl.mcp.library import Library

JobId = Annotated[str, Field(description="A job id such as 'job-1a2b3c4d5e6f7a8b'.")]
WEAKER_WARNING = ("This job ran WITHOUT the bubblewrap sandbox (the datasite's weaker mode): a "
                  "limited process with no filesystem or network isolation.")


class Finding(BaseModel):
    cell: str = Field(description="The cell, as column=value pairs, or 'the whole output'")
    rule: str
    action: str = Field(description="suppressed, or review (an output checker judges it)")
    detail: str


class OutputSummary(BaseModel):
    name: str
    kind: str
    status: str = Field(description="checked, review or withheld")
    summary: str
    findings: list[Finding]


class JobStatus(BaseModel):
    job_id: str
    name: str
    project: str
    state: str
    state_words: str
    progress: float = Field(description="From 0 to 1, while it runs")
    message: str = ""
    datasets: list[str]
    code_sha256: str
    code_url: str = Field(description="The code's page (public once approved)")
    page_url: str = Field(description="The job's web page")
    sandbox: str | None = None
    warning: str | None = Field(default=None, description="Set when it ran without the sandbox")
    error: str = ""
    outputs: list[OutputSummary] = Field(default_factory=list)


class JobList(BaseModel):
    jobs: list[JobStatus]


class OutputText(BaseModel):
    name: str
    media_type: str
    size: int
    text: str


class JobOutputs(BaseModel):
    job_id: str
    files: list[OutputText] = Field(description="The CSV and text files' contents")
    figures: list[str] = Field(description="PNG files, by name (download them whole)")
    download_url: str = Field(description="The outputs' ZIP (with your token)")


class JobCode(BaseModel):
    sha256: str
    published: bool
    files: dict[str, str]


def _findings(o: OutputReport) -> list[Finding]:
    return [Finding(cell=", ".join(f.cell) if f.cell else "the whole output", rule=f.rule,
                    action=f.action, detail=f.detail) for f in o.findings]


def status_of(v: JobView, base: str) -> JobStatus:
    """A job view as the tools return it (pure)."""
    return JobStatus(
        job_id=v.id, name=v.name, project=v.project, state=v.state,
        state_words=v.state_words, progress=v.progress, message=v.progress_message,
        datasets=list(v.datasets), code_sha256=v.code_sha256,
        code_url=f"{base}/jobs/code/{v.code_sha256}", page_url=f"{base}/jobs/{v.id}",
        sandbox=v.sandbox, warning=WEAKER_WARNING if v.sandbox == "weaker" else None,
        error=v.error,
        outputs=[OutputSummary(name=o.name, kind=o.kind, status=o.status, summary=o.summary,
                               findings=_findings(o))
                 for o in (v.report.outputs if v.report else [])])


def status_text(s: JobStatus) -> str:
    lines = [f"Job {s.job_id} ({s.name}, project {s.project}) is {s.state_words}"
             + (f" ({s.progress:.0%}{' — ' + s.message if s.message else ''})"
                if s.progress else "") + "."]
    if s.warning:
        lines.append(f"WARNING: {s.warning}")
    lines.append(f"Datasets: {', '.join(s.datasets)}. Code SHA-256 {s.code_sha256} "
                 f"({s.code_url}). Page: {s.page_url}")
    if s.error:
        lines.append(f"It failed: {s.error}")
    for o in s.outputs:
        lines.append(f"- {o.name} ({o.kind}): {o.summary}")
        lines.extend(f"    {f.cell}: {f.rule}, {f.action} — {f.detail}" for f in o.findings)
    return "\n".join(lines)


def outputs_of(job_id: str, files: list[OutputFile], base: str) -> JobOutputs:
    return JobOutputs(
        job_id=job_id, download_url=f"{base}/api/jobs/{job_id}/outputs",
        files=[OutputText(name=f.name, media_type=f.media_type, size=f.size, text=f.text or "")
               for f in files if f.media_type != "image/png"],
        figures=[f.name for f in files if f.media_type == "image/png"])


def outputs_text(o: JobOutputs) -> str:
    parts = [f"Released outputs of job {o.job_id} (ZIP: {o.download_url})."]
    for f in o.files:
        parts.append(f"--- {f.name} ({f.media_type}, {f.size:,} bytes) ---\n{f.text}")
    if o.figures:
        parts.append("Figures (PNG, in the ZIP): " + ", ".join(o.figures))
    return "\n".join(parts)


def _answer(model: BaseModel, text: str, *, error: bool = False) -> CallToolResult:
    return CallToolResult(content=[TextContent(type="text", text=text)],
                          structured_content=model.model_dump(mode="json"), is_error=error)


def register(server: MCPServer, library: Library, *,
             as_caller: Callable[[Library, Context], Library],
             base_url: Callable[[Library, Context], str],
             wrap: Callable[[Any], Any]) -> None:
    """Add the job tools to ``server`` (``submit_job`` is not read-only: it queues code)."""

    async def submit_job(
        ctx: Context,
        project: Annotated[str, Field(description=(
            "Your project whose active grant covers the datasets the bundle names"))],
        files: Annotated[dict[str, str], Field(description=(
            "The bundle, path -> text: 'ndl-job.toml' (name, language, entry, environment, "
            "datasets, context, [[outputs]]) and the code it names, e.g. 'analysis.py'"))],
    ) -> Annotated[CallToolResult, JobStatus]:
        """Submit code to run on CONTROLLED data you have a grant for. A data steward reviews
        the code (unless the same code was approved before for the project), it runs in the
        datasite's sandbox, and an output checker releases the outputs that pass disclosure
        control. Returns the job's id and state; follow it with job_status."""
        lib = as_caller(library, ctx)
        res = status_of(await lib.submit_job(project, files), base_url(library, ctx))
        return _answer(res, status_text(res))

    async def job_status(ctx: Context, job_id: JobId) -> Annotated[CallToolResult, JobStatus]:
        """One of your projects' jobs: its state, progress, any error, and once it ran, the
        disclosure checks' findings for each output, cell by cell."""
        lib = as_caller(library, ctx)
        res = status_of(await lib.job(job_id), base_url(library, ctx))
        return _answer(res, status_text(res))

    async def list_jobs(ctx: Context) -> Annotated[CallToolResult, JobList]:
        """The jobs of your projects, newest first, with their states."""
        lib = as_caller(library, ctx)
        base = base_url(library, ctx)
        res = JobList(jobs=[status_of(v, base) for v in await lib.jobs()])
        text = "\n".join(f"{j.job_id} {j.name} (project {j.project}): {j.state_words}"
                         for j in res.jobs) or "Your projects have no jobs."
        return _answer(res, text)

    async def read_job_outputs(ctx: Context, job_id: JobId
                               ) -> Annotated[CallToolResult, JobOutputs]:
        """The RELEASED outputs of a job: the text of its CSV and text files, and its
        figures by name. Outputs not yet released by an output checker are refused."""
        lib = as_caller(library, ctx)
        view = await lib.job(job_id)
        # Released means an output checker approved them: anything else stays unread here.
        if not view.released:
            raise InvalidInput(f"the outputs of job {view.id} are not released "
                               f"({view.state_words}): an output checker releases them; "
                               "job_status follows the job")
        res = outputs_of(view.id, await lib.job_output_files(view.id), base_url(library, ctx))
        return _answer(res, outputs_text(res))

    async def job_code(
        ctx: Context, sha256: Annotated[str, Field(description=(
            "The code's SHA-256 (64 hex digits), as job_status or the register names it"))],
    ) -> Annotated[CallToolResult, JobCode]:
        """A job bundle's files by their hash: public once a job running them was approved
        (the library's log of code run on its data)."""
        code: CodeView = await as_caller(library, ctx).job_code(sha256)
        res = JobCode(sha256=code.sha256, published=code.published, files=dict(code.files))
        text = "\n".join([f"Code {res.sha256} ({'public' if res.published else 'not public'})"]
                         + [f"--- {p} ---\n{t}" for p, t in sorted(res.files.items())])
        return _answer(res, text)

    title = "Submit code to run on controlled data"
    server.add_tool(wrap(submit_job), title=title, annotations=ToolAnnotations(
        title=title, read_only_hint=False, destructive_hint=False, idempotent_hint=False,
        open_world_hint=False))
    for fn, title in ((job_status, "Follow a job"), (list_jobs, "List your jobs"),
                      (read_job_outputs, "Read a job's released outputs"),
                      (job_code, "Read a job's code by hash")):
        server.add_tool(wrap(fn), title=title, annotations=ToolAnnotations(
            title=title, read_only_hint=True, destructive_hint=False, idempotent_hint=True,
            open_world_hint=False))


__all__ = ["JobCode", "JobList", "JobOutputs", "JobStatus", "register", "status_of"]
