module schema-gate.dev/pause

go 1.22
