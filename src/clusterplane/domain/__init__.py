"""Pure logic: enums, the lifecycle machine, placement and the fleet model. No I/O."""
