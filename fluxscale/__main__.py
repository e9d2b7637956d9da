from fluxscale.run.cli import main

# Guarded: LocalCluster worker processes are spawned and re-import the main module.
if __name__ == "__main__":
    main()
