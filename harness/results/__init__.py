"""Results: the run store, typed records, the leaderboard, statistics and the HTML report."""
