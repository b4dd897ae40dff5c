package geo

import "errors"

// Sentinel errors. Functions wrap them with %w and a detail, so callers test
// with errors.Is. ErrInvalidPoint and ErrInvalidResolution live in cell.go.
var (
	// ErrInvalidArgument is returned for a number outside its domain: NaN,
	// Inf, negative where it must be positive, a fraction outside 0..1.
	ErrInvalidArgument = errors.New("geo: invalid argument")
	// ErrInvalidCell is returned for an H3 index that is not a valid cell, or
	// a cell at another resolution than the grid's.
	ErrInvalidCell = errors.New("geo: invalid cell")
	// ErrCellNotInGrid is returned when an operation names a cell the grid
	// does not hold.
	ErrCellNotInGrid = errors.New("geo: cell not in grid")
	// ErrUnknownProfile is returned when no ISRID distance table is shipped for
	// a category, ecoregion and terrain.
	ErrUnknownProfile = errors.New("geo: unknown lost-person profile")
	// ErrInvalidProfile is returned for distance quartiles that are not
	// positive and strictly increasing.
	ErrInvalidProfile = errors.New("geo: invalid profile")
	// ErrTooManyCells is returned when an area would need more cells than the
	// configured limit (see WithMaxCells).
	ErrTooManyCells = errors.New("geo: too many cells")
	// ErrEmptyGrid is returned for a grid without cells.
	ErrEmptyGrid = errors.New("geo: empty grid")
	// ErrInvalidGrid is returned by Grid.Validate for a grid whose cells are
	// unsorted, duplicated, or whose probabilities are not finite,
	// non-negative and summing to 1.
	ErrInvalidGrid = errors.New("geo: invalid grid")
	// ErrDegenerate is returned when an update would leave no probability
	// mass anywhere (every cell and the rest of world at zero). The grid is
	// left unchanged.
	ErrDegenerate = errors.New("geo: probability mass vanished")
	// ErrInvalidFix is returned for a track fix without a time or with a
	// non-finite or negative accuracy.
	ErrInvalidFix = errors.New("geo: invalid fix")
	// ErrNoSegment is returned by NextTask when every segment is assigned or
	// holds no probability.
	ErrNoSegment = errors.New("geo: no segment available")
)
