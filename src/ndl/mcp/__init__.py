"""The MCP server: the library's catalogue and open data as tools for AI agents.

``ndl mcp --hub URL`` serves them on stdin/stdout; the hub serves them at ``/mcp`` over
streamable HTTP. Both act with the caller's own token, so agents work within the same rules
as people.
"""

from ndl.mcp.library import HubLibrary, Library, check_dataset_id
from ndl.mcp.server import McpEndpoint, create_server, mount_mcp, serve_stdio

__all__ = [
    "HubLibrary", "Library", "McpEndpoint", "check_dataset_id", "create_server", "mount_mcp",
    "serve_stdio",
]
