"""python -m projector.evaluate"""
from projector.evaluate.stage import main

raise SystemExit(main())
