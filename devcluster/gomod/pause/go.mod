module example.invalid/devcluster/pause

go 1.26
