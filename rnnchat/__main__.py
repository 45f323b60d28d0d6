from rnnchat.cli import main

raise SystemExit(main())
