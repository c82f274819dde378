"""The systolic-array generator: config, PE grid, requant lanes, controllers, top, compiler."""
