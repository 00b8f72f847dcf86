package sqlstore

import (
	"errors"

	"github.com/go-sql-driver/mysql"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// violation is the kind of integrity constraint a statement broke. Methods
// turn it into a store sentinel; what it means depends on the statement (a
// foreign key breaks on insert when the parent is missing, on delete when
// children remain).
type violation int

const (
	noViolation violation = iota
	uniqueKey             // a primary or unique key is taken
	foreignKey
)

func violated(err error) violation {
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() {
		case sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY, sqlite3.SQLITE_CONSTRAINT_UNIQUE:
			return uniqueKey
		case sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY:
			return foreignKey
		}
		return noViolation
	}
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		switch me.Number {
		case 1062: // ER_DUP_ENTRY
			return uniqueKey
		case 1216, 1217, 1451, 1452: // ER_NO_REFERENCED_ROW, ER_ROW_IS_REFERENCED, and their _2 forms
			return foreignKey
		}
	}
	return noViolation
}

func isDeadlock(err error) bool {
	var me *mysql.MySQLError
	return errors.As(err, &me) && me.Number == 1213 // ER_LOCK_DEADLOCK
}

func isBusy(err error) bool {
	var se *sqlite.Error
	return errors.As(err, &se) && se.Code()&0xff == sqlite3.SQLITE_BUSY
}
