"""Long work: submit, follow, cancel and fetch results (the service every face calls)."""
