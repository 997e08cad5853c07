"""python -m projector.generate"""
from projector.generate.stage import main

raise SystemExit(main())
