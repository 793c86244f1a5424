"""The live dashboard for marketers: a web page fed by the result topics (`python -m dashboard`).

`state` aggregates records (pure logic), `kafka` reads the topics into it, `server` serves the
page and pushes snapshots over server-sent events, `static/` is the page itself. The chart
library (Chart.js, pinned in package.json) is installed by `make node-deps` and served from
`node_modules/`, never from a CDN.
"""
