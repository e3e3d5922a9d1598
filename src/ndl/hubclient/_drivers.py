"""The two drivers, sync and async, over one set of operations.

Every operation is written once, in ``_api.py``, as a function that returns a
:class:`~ndl.hubclient._call.Call`. :class:`HubApi` lists them; the :class:`Operation`
descriptor makes each a method that builds the call and hands it to the driver's ``_send``:
``Client._send`` returns the result, ``AsyncClient._send`` a coroutine of it. So both
clients have the same methods with the same signatures and docstrings, typed for mypy
(``client.search(...)`` is ``dict``; ``async_client.search(...)`` is awaitable ``dict``),
and the only code per driver is ``_send``, opening and closing, and ``login``.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable, Coroutine
from typing import Any, Generic, ParamSpec, TypeVar, overload

import httpx

from ndl.core.transport import check_hub_url
from ndl.hubclient import _api as api
from ndl.hubclient._call import Call, reaching
from ndl.hubclient._jobs import JobWork
from ndl.hubclient._long import LongWork

P = ParamSpec("P")
T = TypeVar("T")
DEFAULT_HUB = "http://127.0.0.1:8700"


def _in_process(transport: object) -> bool:
    """A transport that reaches an app in this process (tests, the hub's own /mcp): no
    network is crossed, so the URL's scheme does not matter."""
    return isinstance(transport, httpx.MockTransport | httpx.ASGITransport
                      | httpx.WSGITransport)


class Operation(Generic[P, T]):
    """A hub operation as a method: builds its :class:`Call` and sends it with the driver."""

    def __init__(self, build: Callable[P, Call[T]]) -> None:
        self.build = build
        self.__name__, self.__doc__ = build.__name__, build.__doc__

    @overload
    def __get__(self, obj: None, owner: type[Any]) -> Operation[P, T]: ...

    @overload
    def __get__(self, obj: Client, owner: type[Any]) -> Callable[P, T]: ...

    @overload
    def __get__(self, obj: AsyncClient, owner: type[Any]
                ) -> Callable[P, Coroutine[Any, Any, T]]: ...

    def __get__(self, obj: Client | AsyncClient | None, owner: type[Any]) -> Any:
        if obj is None:
            return self
        build, send = self.build, obj._send

        @functools.wraps(build)
        def method(*args: P.args, **kwargs: P.kwargs) -> Any:
            # Build first: a bad id raises here, before anything is sent.
            return send(build(*args, **kwargs))

        return method


class HubApi:
    """The hub's API, shared by :class:`Client` and :class:`AsyncClient`.

    New operations: write the builder in ``_api.py``, then add one line here.
    """

    # catalogue
    search = Operation(api.search)
    dataset = Operation(api.dataset)
    versions = Operation(api.versions)
    mock = Operation(api.mock)
    datasites = Operation(api.datasites)
    # queries
    query = Operation(api.query)
    sql = Operation(api.sql)
    private_query = Operation(api.private_query)
    budget = Operation(api.budget)
    # access
    create_project = Operation(api.create_project)
    project = Operation(api.project)
    my_projects = Operation(api.my_projects)
    request_access = Operation(api.request_access)
    steward_queue = Operation(api.steward_queue)
    decide = Operation(api.decide)
    revoke_grant = Operation(api.revoke_grant)
    time_to_access = Operation(api.time_to_access)
    evidence = Operation(api.evidence)
    add_evidence = Operation(api.add_evidence)
    evidence_baseline = Operation(api.evidence_baseline)
    project_references = Operation(api.project_references)
    add_project_reference = Operation(api.add_project_reference)
    # accounts and the register (login is per driver: it also changes who the client acts as)
    me = Operation(api.me)
    tokens = Operation(api.tokens)
    create_token = Operation(api.create_token)
    revoke_token = Operation(api.revoke_token)
    logout = Operation(api.logout)
    register_entries = Operation(api.register_entries)
    # the wishlist and demand
    wishes = Operation(api.wishes)
    wish = Operation(api.wish)
    create_wish = Operation(api.create_wish)
    vote = Operation(api.vote)
    comment = Operation(api.comment)
    set_wish_state = Operation(api.set_wish_state)
    dashboard = Operation(api.dashboard)
    # long work
    submit_work = Operation(api.submit_work)
    work = Operation(api.work)
    work_list = Operation(api.work_list)
    cancel_work = Operation(api.cancel_work)
    # controlled jobs (waiting for one and downloading its outputs: Client only)
    submit_job = Operation(api.submit_job)
    job = Operation(api.job)
    jobs = Operation(api.jobs)
    job_logs = Operation(api.job_logs)
    cancel_job = Operation(api.cancel_job)
    job_diff = Operation(api.job_diff)
    job_code = Operation(api.job_code)
    review_job = Operation(api.review_job)
    check_outputs = Operation(api.check_outputs)
    job_output_files = Operation(api.job_output_files)
    review_queue = Operation(api.review_queue)
    output_queue = Operation(api.output_queue)
    job_environments = Operation(api.job_environments)
    # incidents and notices
    raise_incident = Operation(api.raise_incident)
    incidents = Operation(api.incidents)
    incident = Operation(api.incident)
    notices = Operation(api.notices)
    # datasites
    post_envelope = Operation(api.post_envelope)
    # joining, leaving and the data lifecycle
    approve_datasite = Operation(api.approve_datasite)
    retire_datasite = Operation(api.retire_datasite)
    datasite_status = Operation(api.datasite_status)
    withdraw_dataset = Operation(api.withdraw_dataset)
    delete_dataset = Operation(api.delete_dataset)
    dataset_deletions = Operation(api.dataset_deletions)
    close_project = Operation(api.close_project)
    # any call, unchecked, returning the JSON as it came (tests of the hub use it)
    _request = Operation(api.raw)

    url: str
    token: str | None

    def _headers(self, call: Call[Any]) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        headers.update(call.headers or {})
        return headers

    def with_token(self, token: str | None) -> Any:
        """The same connection, acting as the holder of ``token``."""
        view = copy.copy(self)
        view.token = token
        return view


class Client(LongWork, JobWork, HubApi):
    """A connection to one library hub.

    Besides the operations of :class:`HubApi` it waits for long work and downloads its
    results (:class:`~ndl.hubclient._long.LongWork`: ``export``, ``wait_work``,
    ``follow_work``, ``fetch_work``), and waits for controlled jobs and unpacks their outputs
    (:class:`~ndl.hubclient._jobs.JobWork`: ``wait_job``, ``job_outputs``, ``fetch_mock``).

    Hub URLs are https://; plain http:// only to loopback with ``allow_http_loopback=True``
    or ``NDL_ALLOW_HTTP_LOOPBACK=1`` (:mod:`ndl.core.transport`).

    >>> client = Client("https://hub.example", token="ndl_...")     # doctest: +SKIP
    >>> client.search("A&E")["results"][0]["id"]                     # doctest: +SKIP
    'nhs-trust/ae-attendances'
    """

    def __init__(self, url: str = DEFAULT_HUB, token: str | None = None, *,
                 timeout: float | httpx.Timeout = 60.0,
                 transport: httpx.BaseTransport | None = None,
                 allow_http_loopback: bool | None = None) -> None:
        if not _in_process(transport):
            check_hub_url(url, allow_http_loopback=allow_http_loopback)
        self.url = url.rstrip("/")
        self.token = token
        self._http = httpx.Client(base_url=self.url, timeout=timeout, transport=transport)
        self._owns_http = True

    @classmethod
    def over(cls, http: httpx.Client, token: str | None = None) -> Client:
        """A client sending through an ``httpx.Client`` someone else owns (and closes).

        The datasite keeps its own connection, with a read timeout longer than its long-poll.
        """
        self = cls.__new__(cls)
        self.url, self.token = str(http.base_url).rstrip("/"), token
        self._http, self._owns_http = http, False
        return self

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def with_token(self, token: str | None) -> Client:
        """The same connection, acting as the holder of ``token``."""
        view: Client = super().with_token(token)
        return view

    def _send(self, call: Call[T]) -> T:
        with reaching(self.url, call):
            resp = self._http.request(call.method, call.path, params=call.params,
                                      json=call.json, content=call.content,
                                      headers=self._headers(call))
        return call.finish(resp)

    def login(self, username: str, password: str) -> str:
        """Log in; the client then acts as the new token, which is returned."""
        self.token = self._send(api.login(username, password))
        return self.token


class AsyncClient(HubApi):
    """The hub's API for asyncio code: the same methods as :class:`Client`, awaited.

    The ``httpx.AsyncClient`` is opened on first use, because an async client belongs to the
    event loop that made it (the hub's ``/mcp`` endpoint outlives several loops in tests), and
    it is shared by every :meth:`with_token` view.
    """

    def __init__(self, url: str = DEFAULT_HUB, token: str | None = None, *,
                 timeout: float | httpx.Timeout = 60.0,
                 transport: httpx.AsyncBaseTransport | None = None,
                 allow_http_loopback: bool | None = None) -> None:
        if not _in_process(transport):
            check_hub_url(url, allow_http_loopback=allow_http_loopback)
        self.url = url.rstrip("/")
        self.token = token
        self._conn = _Connection(self.url, transport, timeout)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._conn.aclose()

    def with_token(self, token: str | None) -> AsyncClient:
        """The same connection, acting as the holder of ``token``."""
        view: AsyncClient = super().with_token(token)
        return view

    async def _send(self, call: Call[T]) -> T:
        with reaching(self.url, call):
            resp = await self._conn.client().request(
                call.method, call.path, params=call.params, json=call.json,
                content=call.content, headers=self._headers(call))
        return call.finish(resp)

    async def login(self, username: str, password: str) -> str:
        """Log in; the client then acts as the new token, which is returned."""
        self.token = await self._send(api.login(username, password))
        return self.token


class _Connection:
    """One lazily opened ``httpx.AsyncClient``, shared by copies of an :class:`AsyncClient`."""

    def __init__(self, base_url: str, transport: httpx.AsyncBaseTransport | None,
                 timeout: float | httpx.Timeout) -> None:
        self.base_url, self.transport, self.timeout = base_url, transport, timeout
        self._client: httpx.AsyncClient | None = None

    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(base_url=self.base_url, transport=self.transport,
                                             timeout=self.timeout)
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()
