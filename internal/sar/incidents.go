package sar

// IncidentIndex names which list of incidents to page through.
type IncidentIndex struct {
	All          bool   // every incident (admins)
	Jurisdiction string // incidents of a jurisdiction (operators)
	Agency       string // incidents an agency is assigned to (rescuers)
	TeamRef      string // incidents a team is assigned to (rescuers)
}
